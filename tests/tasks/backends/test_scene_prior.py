"""The CPU scene-prior voters on real frames: answers that depend on the content, not on where
the pixels sit (issue 10: the cluster voter's k-means++ seeds were drawn by pixel index)."""

import cv2
import numpy as np

from tasks.backends.scene_prior import ClusterPriorVoter, content_initial_labels
from tasks.metrics.consistency import agreement


def test_initial_kmeans_labels_do_not_depend_on_pixel_order():
    rng = np.random.default_rng(3)
    data = np.concatenate([rng.normal(c, 1.0, (400, 5)) for c in (0.0, 6.0, 12.0)]).astype(np.float32)
    labels = content_initial_labels(data, 3)[:, 0]
    assert labels.shape == (1200,) and set(labels.tolist()) == {0, 1, 2}
    assert np.bincount(labels).min() == 400           # equal-count bins along the main axis
    perm = rng.permutation(len(data))
    again = content_initial_labels(data[perm], 3)[:, 0]
    # the same partition of the same pixels (bins may be numbered the other way round)
    assert agreement([labels[perm][None, :] + 1], [again[None, :] + 1])["iou_weighted"] == 1.0
    assert content_initial_labels(data[:2], 3)[:, 0].tolist() == [0, 1]   # fewer points than k


def test_cluster_voter_gives_a_rolled_real_frame_the_rolled_answer(shared_data):
    bgr = cv2.imread(str(shared_data / "360vot_samples/0115_000216.jpg"))
    rgb = np.ascontiguousarray(cv2.cvtColor(cv2.resize(bgr, (512, 256), interpolation=cv2.INTER_AREA),
                                            cv2.COLOR_BGR2RGB))
    voter = ClusterPriorVoter()
    ref = voter.segment(rgb)
    for shift in (128, 256):                        # whole columns of the voter's 256-px work frame
        got = voter.segment(np.roll(rgb, shift, axis=1))
        assert sorted(got.names.values()) == sorted(ref.names.values())
        assert agreement([np.roll(ref.labels, shift, axis=1)], [got.labels])["iou_weighted"] >= 0.99

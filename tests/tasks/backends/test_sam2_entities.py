"""The SAM2 automatic-mask entity proposer (issue 13 §1), without weights.

A SAM 2.1 Hiera-tiny with random weights at input size 128 is saved as a released checkpoint
(``sam2.1_hiera_tiny.pt``), imported into a model store with ``models import`` and named by
``propagate.sam2_checkpoint``: the proposer loads it exactly as production does (and as the
propagator does — the same model object). Random weights give meaningless masks, so the tests
check what does not depend on them: the pieces rebuilt without torchvision (box NMS, the
exclusive label map) against their definitions, and on a real ERP tile the protocol (exclusive
int32 map of the tile's shape, numbered 1..n), determinism, the tiles/polar-views path of
``propose_frame``, the OOM retries and the typed errors.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tasks.backends import build_backends
from tasks.backends.protocols import EntitySegmentor
from tasks.backends.sam2_entities import MaskSet, Sam2EntitySegmentor, box_nms, build_sam2_entities
from tasks.backends.sam2_propagator import CheckpointError, build_sam2_propagator
from tasks.backends.torch_runtime import DeviceUnavailable, ProposalOutOfMemory
from tasks.config import PipelineConfig
from tasks.errors import EXIT_USAGE, ConfigError
from tasks.geometry.tiles import cut_tiles, tile_layout
from tasks.labeling.proposals import propose_frame
from tasks.models import ModelMismatch, import_model
from tasks.storage import LocalStore
from tests.support.tiny_models import tiny_panoptic, tiny_sam2_checkpoint

REPO = Path(__file__).resolve().parents[3]
S = 128          # SAM2 input size in the tests
W = 512          # ERP work width: tiles of 256 x 256
MODEL = "sam2.1-hiera-tiny-test"
# thresholds 0: a random model's IoU predictions and stability say nothing; the filters
# themselves are exercised with their production values in test_filters_use_the_configured_thresholds
LOOSE = {"amg_points_per_side": 6, "amg_pred_iou_thresh": 0.0, "amg_stability_thresh": 0.0}


pytestmark = pytest.mark.usefixtures("model_cache", "two_torch_threads")   # tests/tasks/backends/conftest.py


@pytest.fixture(scope="module")
def frame(shared_data) -> np.ndarray:
    bgr = cv2.imread(str(shared_data / "360vot_samples" / "0030_000064.jpg"))
    return cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (W, W // 2), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def tile(frame) -> np.ndarray:
    return np.ascontiguousarray(cut_tiles(frame, tile_layout(W // 2, W))[1])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("sam2_models")
    st = LocalStore(root / "store")
    import_model(st, tiny_sam2_checkpoint(root / "src", image_size=S), MODEL, source="tests.support.tiny_models")
    return st


def config(**propose) -> PipelineConfig:
    return PipelineConfig.from_dict({
        "propose": {"entity_backend": "sam2_amg", "layout": "tiles", "work_width": W, "device": "cpu",
                    **LOOSE, **propose},
        "propagate": {"sam2_model": "tiny", "sam2_checkpoint": MODEL, "sam2_image_size": S, "sam2_device": "cpu"},
        "verify": {"verifier": "none"},
    })


@pytest.fixture(scope="module")
def proposer(store) -> Sam2EntitySegmentor:
    return build_backends(config(), store).entity


# -- the pieces written without torchvision --------------------------------------------------------
def _nms_reference(boxes: np.ndarray, scores: np.ndarray, thr: float) -> list[int]:
    """torchvision.ops.nms as documented: by decreasing score, drop boxes with IoU > thr to a kept one."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep: list[int] = []
    for i in order:
        ok = True
        for j in keep:
            ix = max(0.0, min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0]))
            iy = max(0.0, min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1]))
            inter = ix * iy
            ai = (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
            aj = (boxes[j, 2] - boxes[j, 0]) * (boxes[j, 3] - boxes[j, 1])
            union = ai + aj - inter
            if union > 0 and inter / union > thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


def test_box_nms_is_torchvision_nms():
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(0, 40))
        xy = rng.uniform(0, 50, (n, 2))
        wh = rng.uniform(0, 30, (n, 2))
        boxes = np.concatenate([xy, xy + wh], 1).round()
        scores = rng.uniform(0, 1, n)
        for thr in (0.3, 0.7):
            got = box_nms(torch.tensor(boxes), torch.tensor(scores), thr).tolist()
            assert got == _nms_reference(boxes, scores, thr)


def test_box_nms_edges():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 20, 20], [20, 20, 20, 20.]])
    scores = torch.tensor([0.5, 0.9, 0.1, 0.3, 0.2])
    # the duplicate with the lower score goes; IoU exactly 0.5 is kept at threshold 0.5 (strictly greater
    # suppresses); empty boxes (0/0) suppress nothing
    assert box_nms(boxes, scores, 0.5).tolist() == [1, 3, 4, 2]    # by decreasing score
    assert box_nms(boxes, scores, 0.49).tolist() == [1, 3, 4]
    assert box_nms(torch.zeros((0, 4)), torch.zeros(0), 0.7).tolist() == []


def _maskset(masks: list[np.ndarray]) -> MaskSet:
    n = len(masks)
    return MaskSet(torch.from_numpy(np.stack(masks)), torch.ones(n), torch.ones(n), torch.zeros((n, 2)))


def test_exclusive_map_keeps_small_objects_on_large_ones():
    h, w = 20, 30
    wall = np.zeros((h, w), bool)
    wall[:, :20] = True
    person = np.zeros((h, w), bool)
    person[5:15, 5:10] = True
    badge = np.zeros((h, w), bool)      # on the person: smaller, painted on top
    badge[6:8, 6:8] = True
    table = np.zeros((h, w), bool)      # covered entirely by the two smaller masks below: nothing visible
    table[0:4, 20:30] = True
    top, bottom = table.copy(), table.copy()
    top[2:4] = False
    bottom[0:2] = False
    speck = np.zeros((h, w), bool)      # visible but under the area threshold
    speck[19, 29] = True
    lab = Sam2EntitySegmentor.exclusive(_maskset([person, wall, table, badge, top, speck, bottom]), (h, w), min_px=2)
    assert lab.dtype == np.int32 and lab.shape == (h, w)
    ids = set(np.unique(lab).tolist()) - {0}
    assert ids == {1, 2, 3, 4, 5}                      # numbered 1..n; the table and the speck dropped
    b, p = int(lab[7, 7]), int(lab[10, 7])
    assert ((lab == b) == badge).all()
    assert ((lab == p) == (person & ~badge)).all()     # the person keeps all but the badge on it
    wl = int(lab[0, 0])
    assert ((lab == wl) == (wall & ~person)).all()
    assert ((lab == int(lab[0, 25])) == top).all() and ((lab == int(lab[3, 25])) == bottom).all()
    assert lab[19, 29] == 0


# -- on a real tile, through the model store -------------------------------------------------------
def test_sam2_masks_on_a_real_tile(proposer, tile):
    assert isinstance(proposer, EntitySegmentor) and proposer.name == "sam2_amg"
    lab = proposer.segment(tile)
    assert lab.shape == tile.shape[:2] and lab.dtype == np.int32
    ids = np.unique(lab)
    assert ids[0] == 0 or ids.min() >= 1
    pos = ids[ids > 0]
    assert pos.size >= 1 and (pos == np.arange(1, pos.size + 1)).all()
    np.testing.assert_array_equal(proposer.segment(tile), lab)         # deterministic
    found = proposer.generate(tile)
    assert found.masks.shape[1:] == tile.shape[:2] and found.masks.dtype == torch.bool
    # every kept mask survived NMS: no two with box IoU above the threshold
    from sam2.utils.amg import batched_mask_to_box

    assert len(box_nms(batched_mask_to_box(found.masks), found.iou_preds, proposer.box_nms_iou)) == len(found)
    # odd sizes (polar views) come back at their size
    odd = np.ascontiguousarray(cv2.resize(tile, (203, 151)))
    assert proposer.segment(odd).shape == (151, 203)


def test_filters_use_the_configured_thresholds(store, tile):
    """Production thresholds on a random model: whatever survives passed them; an impossible
    threshold leaves an empty (all-zero) map of the tile's shape."""
    strict = build_sam2_entities(config(amg_pred_iou_thresh=0.3, amg_stability_thresh=0.2), store)
    found = strict.generate(tile)
    assert bool((found.iou_preds > 0.3).all()) and bool((found.stability >= 0.2).all())
    none = build_sam2_entities(config(amg_pred_iou_thresh=1.0), store)
    lab = none.segment(tile)
    assert lab.shape == tile.shape[:2] and lab.max() == 0


def test_one_model_two_roles(store, proposer):
    """The proposer and the propagator share the checkpoint and, in one process, the model."""
    prop = build_sam2_propagator(config(), W, store=store)
    assert prop.model is proposer.model


def test_runs_on_the_tiles_and_polar_views_like_the_cpu_proposer(store, frame, proposer, monkeypatch):
    seen = []
    seg = proposer.segment

    def spy(image):
        seen.append(image.shape[:2])
        return seg(image)

    monkeypatch.setattr(proposer, "segment", spy)
    cfg = config()
    props = propose_frame(frame, cfg, build_backends(cfg, store))
    assert props.entity.shape == frame.shape[:2] and props.entity_source == "sam2_amg"
    lay = tile_layout(W // 2, W, cfg.tiling.pad_ratio, cfg.tiling.tiles)
    tile_shape = cut_tiles(frame, lay)[0].shape[:2]
    assert seen.count(tile_shape) == cfg.tiling.tiles
    assert len(seen) == cfg.tiling.tiles + 2                           # + the two polar views
    assert set(props.entity_tiles) == set(np.unique(props.entity).tolist()) - {0}


def test_cuda_out_of_memory_retries_with_fewer_points(store, tile, monkeypatch):
    prop = build_sam2_entities(config(amg_points_per_batch=36), store)
    expected = prop.segment(tile)
    decoder = prop.model.sam_mask_decoder
    forward = decoder.forward
    batches = []

    def tight(*args, **kw):
        n = kw["sparse_prompt_embeddings"].shape[0]
        batches.append(n)
        if n > 9:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.00 GiB (simulated)")
        return forward(*args, **kw)

    monkeypatch.setattr(decoder, "forward", tight)
    got = prop.segment(tile)
    assert batches[:3] == [36, 18, 9] and prop.points_per_batch == 9
    # the same masks up to float noise of batched kernels
    assert (got == expected).mean() > 0.999 and got.max() == expected.max()

    def never(*args, **kw):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(decoder, "forward", never)
    with pytest.raises(ProposalOutOfMemory, match="even one at a time") as err:
        prop.segment(tile)
    assert err.value.retryable


# -- bad input -----------------------------------------------------------------------------------------
def test_sam2_entities_need_the_tiles_layout():
    with pytest.raises(ConfigError, match="propose.layout"):
        PipelineConfig.from_dict({"propose": {"entity_backend": "sam2_amg"}})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_a_pod_that_asked_for_a_gpu_and_has_none_fails_with_exit_2(store):
    with pytest.raises(DeviceUnavailable, match="propose.device is 'cuda'.*no CUDA device") as err:
        _ = build_backends(config(device="cuda"), store).entity
    assert err.value.exit_code == EXIT_USAGE


def test_missing_or_foreign_checkpoints_are_typed_errors(store, tmp_path, tile):
    cfg = PipelineConfig.from_dict({**config().model_dump(), "propagate": {
        **config().propagate.model_dump(), "sam2_checkpoint": "sam2-not-imported"}})
    with pytest.raises(CheckpointError, match="models import"):
        build_sam2_entities(cfg, store)
    # a transformers model imported under the SAM2 name: the manifest says which class loads it
    other = LocalStore(tmp_path / "store")
    import_model(other, tiny_panoptic(tmp_path / "m2f", "mask2former", ["road", "sky"]), MODEL)
    with pytest.raises(ModelMismatch) as err:
        build_sam2_entities(config(), other)
    assert err.value.exit_code == EXIT_USAGE
    # not an image
    prop = build_sam2_entities(config(), store)
    with pytest.raises(ValueError, match="RGB uint8"):
        prop.segment(tile.astype(np.float32))


# -- end to end ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_tasks_label_with_the_production_configuration_on_tiny_models(tmp_path):
    """`configs/production.yaml` (SAM2 entities + propagation, the three OneFormer voters) with
    its models replaced by tiny random ones imported under the production names, run through
    every stage by `tasks label` on a short synthetic clip. Overrides: the CPU instead of CUDA,
    the tiny SAM2 in place of Hiera-L, thresholds 0 (random weights), the CPU verifier instead of
    the VLM endpoint; everything else is the production file."""
    from tasks.backends.panoptic_hf import VOTERS
    from tasks.label import label_video
    from tasks.layout import manifest_key
    from tasks.synth import render_clip
    from tasks.vocabulary import master

    store = LocalStore(tmp_path / "store")
    import_model(store, tiny_sam2_checkpoint(tmp_path / "sam2", image_size=S), MODEL)
    prod = PipelineConfig.from_file(REPO / "configs" / "production.yaml")
    assert prod.propose.entity_backend == "sam2_amg" and len(prod.propose.panoptic_backends) == 3
    for name in prod.propose.panoptic_backends:
        spec = VOTERS[name]
        import_model(store, tiny_panoptic(tmp_path / name, spec.architecture, list(master().maps[spec.label_space])),
                     name)
    cfg = prod.with_overrides({
        "propose.device": "cpu", "propagate.sam2_device": "cpu", "propagate.sam2_model": "tiny",
        "propagate.sam2_checkpoint": MODEL, "propagate.sam2_image_size": S, **{f"propose.{k}": v for k, v in LOOSE.items()},
        "propose.panoptic_score_thresh": 0.0, "propose.panoptic_overlap_thresh": 0.0, "verify.verifier": "embedding"})
    render_clip(tmp_path / "clip", seconds=1.0, fps=4.0, width=128, seed=1, progress=False)
    res = label_video(tmp_path / "clip" / "clip.mp4", tmp_path / "out", config=cfg, store=store, progress=False)
    assert res.frames == 4 and res.validation_passed
    propose = store.get_json(manifest_key(res.video_id, res.run, "propose"))
    assert set(propose["stats"]["voter_segments"]["0"]) == set(prod.propose.panoptic_backends)
    annotations = (tmp_path / "out" / "annotations.json").read_text()
    assert '"annotations"' in annotations and len(list((tmp_path / "out" / "idmaps").glob("*.png"))) == 4

"""The Mask2Former/OneFormer voters on their real code path, without weights (issue 13 §2, §5).

Each model class is a tiny randomly initialised configuration saved with ``save_pretrained``
(:mod:`tests.support.tiny_models`), imported with ``models import`` into a store, and loaded by
the voter through the model store; it runs on tiles of a real ERP panorama. Random weights mean
random masks: the tests check what users rely on whatever the weights — masks of the tile's exact
shape, exclusive segments, every name mapped through the real label maps to the vocabulary, the
vote fed as in production — plus the panoptic merge itself on hand-made logits, and the typed
errors for bad models, bad maps, a missing GPU and CUDA out of memory.
"""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import torch

from tasks.backends import build_backends
from tasks.backends.panoptic_hf import (
    VOTERS,
    HFPanopticVoter,
    LabelMapError,
    PanopticModelError,
    panoptic_merge,
)
from tasks.backends.protocols import PanopticSegmentor
from tasks.backends.torch_runtime import DeviceUnavailable, ProposalOutOfMemory
from tasks.config import PipelineConfig
from tasks.errors import EXIT_PERMANENT, EXIT_USAGE, ConfigError, TransientError
from tasks.geometry.tiles import cut_tiles, tile_layout
from tasks.labeling.proposals import FrameProposals, propose_frame
from tasks.labeling.vote import label_entities
from tasks.models import ModelCorrupt, ModelMismatch, import_model
from tasks.storage import LocalStore
from tasks.vocabulary import Vocabulary, master
from tests.support.tiny_models import tiny_panoptic

# one voter per label space, both model classes
TINY = {"oneformer_ade20k": "oneformer", "mask2former_coco": "mask2former", "oneformer_cityscapes": "oneformer"}
W = 512   # ERP work width of the tests: three 256x256 tiles (+ wrap padding)


pytestmark = pytest.mark.usefixtures("model_cache", "two_torch_threads")   # tests/tasks/backends/conftest.py


@pytest.fixture(scope="module")
def frame(shared_data) -> np.ndarray:
    bgr = cv2.imread(str(shared_data / "erp_images" / "pannellum_examplepano_4096x2048.jpg"))
    return cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (W, W // 2), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def tiles(frame) -> list[np.ndarray]:
    return [np.ascontiguousarray(t) for t in cut_tiles(frame, tile_layout(W // 2, W))]


@pytest.fixture(scope="module")
def model_store(tmp_path_factory):
    """A store holding the three tiny voters under their voter names, and a model cache."""
    root = tmp_path_factory.mktemp("panoptic_models")
    store = LocalStore(root / "store")
    for name, arch in TINY.items():
        folder = tiny_panoptic(root / "src" / name, arch, list(master().maps[VOTERS[name].label_space]))
        import_model(store, folder, name, source="tests.support.tiny_models", license="test-only")
    return store, root / "cache"


@pytest.fixture(scope="module")
def voters(model_store) -> dict[str, HFPanopticVoter]:
    store, cache = model_store
    # thresholds 0: random classifiers are not confident and random masks overlap; every query that
    # is not "no object" competes and keeps what it wins (the thresholds: test_panoptic_merge_*)
    return {n: HFPanopticVoter(n, store=store, cache_dir=cache, score_thresh=0.0, overlap_thresh=0.0) for n in TINY}


def test_every_voter_name_loads_its_architecture_and_label_space():
    assert set(VOTERS) == {f"{a}_{d}" for a in ("mask2former", "oneformer") for d in ("ade20k", "coco", "cityscapes")}
    assert {v.label_space for v in VOTERS.values()} == {"ade20k", "coco_panoptic", "cityscapes"}
    assert set(master().maps) >= {"ade20k", "coco_panoptic", "cityscapes"}
    assert len(master().maps["ade20k"]) == 150


def test_ade20k_map_covers_the_150_classes_and_lands_in_the_vocabulary():
    vocab = master()
    ade = vocab.maps["ade20k"]
    assert all(v in vocab for v in ade.values())
    assert ade["windowpane"] == "window" and ade["bed"] == "bed" and ade["ashcan"] == "ashcan"
    # the HF checkpoints' name with its stray space is looked up stripped
    assert vocab.canonical("bed ".strip(), source="ade20k") == "bed"


def test_voters_on_real_tiles_give_exclusive_masks_of_the_exact_tile_shape(voters, tiles):
    vocab = master()
    for name, v in voters.items():
        assert isinstance(v, PanopticSegmentor) and v.tiled
        for tile in tiles[:2]:
            seg = v.segment(tile)
            assert seg.labels.shape == tile.shape[:2] and seg.labels.dtype == np.int32
            present = set(np.unique(seg.labels).tolist()) - {0}
            assert present, f"{name}: no segment on a real tile"
            # one id per segment (a label map is exclusive by construction); every id named and scored
            assert set(seg.names) == present and set(seg.scores) == present
            for native in seg.names.values():
                assert native in v.class_names
                assert vocab.canonical(native, source=v.label_space) in vocab, (name, native)


def test_masks_come_back_at_any_tile_size(voters, frame):
    """A polar view or an odd-sized tile: the map is exactly the input's size (nearest from the
    640-wide result), never off by one from rounding."""
    v = voters["mask2former_coco"]
    for h, w in ((257, 301), (100, 700)):
        img = np.ascontiguousarray(cv2.resize(frame, (w, h)))
        assert v.segment(img).labels.shape == (h, w)


def test_segment_many_equals_one_tile_at_a_time(voters, tiles):
    """A batch of tiles gives each tile's own result (up to float noise of batched kernels:
    a few pixels where two random masks tie)."""
    v = voters["oneformer_cityscapes"]
    many = v.segment_many(tiles)
    assert len(many) == len(tiles)
    for tile, got in zip(tiles, many):
        one = v.segment(tile)
        assert got.labels.shape == one.labels.shape
        assert (got.labels == one.labels).mean() > 0.999


def test_the_vote_is_fed_as_in_production(model_store, frame, monkeypatch):
    """propose_frame on the tiles with the three voters, through build_backends and the store
    (each voter gets the frame's tiles as one batch); their maps survive the propose stage's
    files; the vote reads mapped names."""
    store, _ = model_store
    config = PipelineConfig.from_dict({"propose": {
        "layout": "tiles", "work_width": W, "panoptic_backends": list(TINY), "panoptic_score_thresh": 0.0,
        "panoptic_overlap_thresh": 0.0},
        "verify": {"verifier": "none"}})
    backends = build_backends(config, store)
    batches = []
    for v in backends.voters:
        monkeypatch.setattr(v, "_segment_batch", lambda ims, _f=v._segment_batch: batches.append(len(ims)) or _f(ims))
    props = propose_frame(frame, config, backends)
    assert batches == [config.tiling.tiles] * len(TINY)
    assert set(props.voters) == set(TINY)
    assert {props.spaces[n] for n in TINY} == {"ade20k", "coco_panoptic", "cityscapes"}
    for seg in props.voters.values():
        assert seg.labels.shape == frame.shape[:2]
        assert set(seg.names) >= set(np.unique(seg.labels).tolist()) - {0}
    files, meta = props.to_files()
    again = FrameProposals.from_files(files, meta)
    for n in TINY:
        np.testing.assert_array_equal(again.voters[n].labels, props.voters[n].labels)
    labels, stats = label_entities(props, config, backends)
    assert stats["entities"] == int(props.entity.max())
    vocab = master()
    seen = 0
    for lab in labels.values():
        for vname, vote in lab.votes.items():
            assert vote["label"] == vocab.canonical(vote["native"], source=props.spaces[vname])
            assert vote["label"] in vocab
            seen += 1
    assert seen > 0, "no voter matched any entity: the vote was not fed"


# -- the panoptic merge (detectron2's panoptic_inference) -------------------------------------------
def _reference_merge(cls, masks, score_thresh, overlap_thresh, stuff):
    """detectron2 MaskFormer ``panoptic_inference``, written as it is there (a loop per query)."""
    scores, labels = torch.softmax(cls, -1).max(-1)
    keep = (labels != cls.shape[-1] - 1) & (scores > score_thresh)
    scores, labels, m = scores[keep], labels[keep], masks[keep].sigmoid()
    seg = torch.zeros(masks.shape[-2:], dtype=torch.int32)
    ids = (scores[:, None, None] * m).argmax(0)
    out, stuff_seen = [], {}
    for k in range(labels.shape[0]):
        c = int(labels[k])
        area, orig = int((ids == k).sum()), int((m[k] >= 0.5).sum())
        mask = (ids == k) & (m[k] >= 0.5)
        if area > 0 and orig > 0 and mask.sum() > 0:
            if area / orig < overlap_thresh:
                continue
            if c in stuff_seen:
                seg[mask] = stuff_seen[c]
                continue
            out.append((len(out) + 1, c, round(float(scores[k]), 6)))
            if c in stuff:
                stuff_seen[c] = len(out)
            seg[mask] = len(out)
    return seg, out


def test_panoptic_merge_is_detectron2s_panoptic_inference():
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        q, c = 15, 6
        cls = torch.randn(q, c + 1, generator=g) * 3
        masks = torch.randn(q, 24, 32, generator=g) * 4
        for st, ot in ((0.0, 0.8), (0.3, 0.5), (0.0, 0.0)):
            got, segs = panoptic_merge(cls, masks, score_thresh=st, overlap_thresh=ot, stuff_labels={0, 2})
            ref, rsegs = _reference_merge(cls, masks, st, ot, {0, 2})
            torch.testing.assert_close(got, ref)
            assert segs == rsegs


def test_panoptic_merge_fuses_stuff_keeps_things_apart_and_drops_no_object():
    h, w = 8, 8
    big = 10.0
    masks = torch.full((4, h, w), -big)
    masks[0, :, :4] = big      # sky, left
    masks[1, :, 4:] = big      # sky, right
    masks[2, :4, :] = 2 * big  # person, top, over the two sky queries (more confident there)
    masks[3, 4:, :] = big      # "no object"
    cls = torch.full((4, 3), -big)   # classes: 0 sky (stuff), 1 person (thing), 2 = no object
    cls[0, 0] = cls[1, 0] = big
    cls[2, 1] = big
    cls[3, 2] = big
    seg, segs = panoptic_merge(cls, masks, score_thresh=0.5, overlap_thresh=0.0, stuff_labels={0})
    assert [s[1] for s in segs] == [0, 1]                    # one sky segment, one person
    sky, person = segs[0][0], segs[1][0]
    assert (seg[4:, :] == sky).all() and (seg[:4, :] == person).all()   # both sky halves, one id
    assert set(torch.unique(seg).tolist()) == {sky, person}
    # a thing class twice is two segments
    cls[0] = cls[2]
    cls[1] = cls[2]
    _, segs = panoptic_merge(cls, masks, score_thresh=0.5, overlap_thresh=0.0, stuff_labels={0})
    assert [s[1] for s in segs].count(1) >= 2


# -- bad input -----------------------------------------------------------------------------------------
def test_a_label_map_naming_a_class_outside_the_vocabulary_is_refused_at_load(model_store):
    store, cache = model_store
    v = master()
    bad_maps = {k: dict(m) for k, m in v.maps.items()}
    bad_maps["cityscapes"]["sky"] = "heavens"
    bad = Vocabulary(v.categories, v.unknown, bad_maps)
    with pytest.raises(LabelMapError, match="heavens") as err:
        HFPanopticVoter("oneformer_cityscapes", store=store, cache_dir=cache, vocab=bad)
    assert err.value.exit_code == EXIT_USAGE


def test_a_checkpoint_of_another_dataset_is_refused_at_load(model_store, tmp_path):
    """COCO classes under a Cityscapes voter's name: its classes are not in the map."""
    store, cache = model_store
    folder = tiny_panoptic(tmp_path / "coco_as_cs", "oneformer", list(master().maps["coco_panoptic"]))
    import_model(store, folder, "oneformer_cityscapes_wrong")
    with pytest.raises(LabelMapError, match="not a cityscapes checkpoint"):
        HFPanopticVoter("oneformer_cityscapes", folder=folder)


def test_a_model_of_another_architecture_is_refused(model_store, tmp_path):
    store, cache = model_store
    # imported as the oneformer voter's model, but it is a Mask2Former: the manifest's loader says so
    m2f = tiny_panoptic(tmp_path / "m2f", "mask2former", list(master().maps["ade20k"]))
    other = LocalStore(tmp_path / "store")
    import_model(other, m2f, "oneformer_ade20k")
    with pytest.raises(ModelMismatch) as err:
        HFPanopticVoter("oneformer_ade20k", store=other, cache_dir=tmp_path / "cache")
    assert err.value.exit_code == EXIT_USAGE
    # a mounted folder without a manifest is still checked against config.json
    with pytest.raises(ModelMismatch, match="mask2former"):
        HFPanopticVoter("oneformer_ade20k", folder=m2f)


def test_a_missing_file_is_a_clear_typed_error(model_store, tmp_path):
    store, cache = model_store
    # a snapshot whose weights never arrived: imported as it is, refused at load
    src = tiny_panoptic(tmp_path / "partial", "mask2former", list(master().maps["coco_panoptic"]))
    (src / "model.safetensors").unlink()
    other = LocalStore(tmp_path / "store")
    import_model(other, src, "mask2former_coco")
    with pytest.raises(PanopticModelError, match="models import") as err:
        HFPanopticVoter("mask2former_coco", store=other, cache_dir=tmp_path / "cache")
    assert err.value.exit_code == EXIT_PERMANENT
    # a file lost from the store after the import: the store's check names it
    full = tiny_panoptic(tmp_path / "full", "mask2former", list(master().maps["coco_panoptic"]))
    store2 = LocalStore(tmp_path / "store2")
    m = import_model(store2, full, "mask2former_coco")
    store2.delete(f"models/mask2former_coco/{m.version}/model.safetensors")
    with pytest.raises(ModelCorrupt, match="model.safetensors") as err:
        HFPanopticVoter("mask2former_coco", store=store2, cache_dir=tmp_path / "cache2")
    assert err.value.exit_code == EXIT_PERMANENT
    # no config.json at all
    bare = tmp_path / "bare"
    shutil.copytree(full, bare)
    (bare / "config.json").unlink()
    with pytest.raises(PanopticModelError, match="no config.json"):
        HFPanopticVoter("mask2former_coco", folder=bare)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_a_pod_that_asked_for_a_gpu_and_has_none_fails_with_exit_2(model_store):
    store, cache = model_store
    with pytest.raises(DeviceUnavailable, match="propose.device") as err:
        HFPanopticVoter("oneformer_ade20k", store=store, cache_dir=cache, device="cuda")
    assert err.value.exit_code == EXIT_USAGE
    config = PipelineConfig.from_dict({"propose": {"device": "cuda", "panoptic_backends": ["oneformer_ade20k"]}})
    with pytest.raises(DeviceUnavailable):
        _ = build_backends(config, store).voters


def test_cuda_out_of_memory_retries_with_smaller_batches(voters, tiles, monkeypatch):
    v = voters["oneformer_ade20k"]
    expected = [v.segment(t) for t in tiles]
    run = v._run
    sizes = []

    def tight(small, shapes):
        sizes.append(len(small))
        if len(small) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return run(small, shapes)

    monkeypatch.setattr(v, "_run", tight)
    monkeypatch.setattr(v, "batch_tiles", 3)
    got = v.segment_many(tiles)
    assert sizes[:2] == [3, 1] or sizes[:3] == [3, 1, 1]
    assert v.batch_tiles == 1
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a.labels, b.labels)

    def never(small, shapes):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(v, "_run", never)
    with pytest.raises(ProposalOutOfMemory, match="even one at a time") as err:
        v.segment(tiles[0])
    assert isinstance(err.value, TransientError) and err.value.retryable


def test_bad_images_and_names_are_refused(voters):
    v = voters["mask2former_coco"]
    with pytest.raises(ValueError, match="RGB uint8"):
        v.segment(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="RGB uint8"):
        v.segment(np.zeros((64, 64), np.uint8))
    config = PipelineConfig.from_dict({"propose": {"panoptic_backends": ["oneformer_ade20"]}})
    with pytest.raises(ConfigError, match="unknown panoptic backend 'oneformer_ade20'.*oneformer_ade20k"):
        _ = build_backends(config).voters


def test_a_oneformer_snapshot_naming_the_hubs_class_info_file_loads_offline(tmp_path):
    """The released OneFormer snapshots' preprocessor_config.json names a metadata file of the hub
    dataset shi-labs/oneformer_demo (used for training only); loading must not reach for it."""
    import json

    folder = tiny_panoptic(tmp_path / "of", "oneformer", list(master().maps["ade20k"]))
    cfg = folder / "preprocessor_config.json"
    data = json.loads(cfg.read_text())
    data.update(class_info_file="ade20k_panoptic.json", repo_path="shi-labs/oneformer_demo", num_text=134)
    cfg.write_text(json.dumps(data))
    v = HFPanopticVoter("oneformer_ade20k", folder=folder, score_thresh=0.0, overlap_thresh=0.0)
    assert v.segment(np.zeros((64, 64, 3), np.uint8)).labels.shape == (64, 64)

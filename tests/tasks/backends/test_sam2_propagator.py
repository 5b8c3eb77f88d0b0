"""The SAM2 propagator on the CPU, with a randomly initialised Hiera-tiny at image size 128.

No SAM2 checkpoint can be had here, so the masks are meaningless: the tests check what does not
depend on trained weights — the real code path runs (prompts in, one uint16 id map per frame
out, only prompted ids, deterministic), the streaming engine computes what the stock
``SAM2VideoPredictor`` computes on the same weights while keeping a bounded state, the seam
fold and the exclusive id map on synthetic logits, resume, OOM retries, checkpoint and device
checks, and the typed errors for bad inputs.

SAM2's ``_C`` warning: the stock predictor calls ``fill_holes_in_mask_scores``, which needs the
CUDA extension and warns "Skipping the post-processing step" on every frame without it. Only
the test that runs the stock predictor for comparison sees it, and filters exactly that message
(the hole filling it skips is a no-op for the comparison, which reads the unfilled logits
both sides store). The propagator itself never triggers it on the CPU (it checks for the
extension up front, see ``test_no_warning_from_the_propagator_on_cpu``).
"""

from __future__ import annotations

import logging
import shutil
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tasks.backends import sam2_propagator
from tasks.backends.protocols import Propagator
from tasks.backends.sam2_memory import MemorySpec, Sam2Stream, encode_frames
from tasks.backends.sam2_propagator import (
    CheckpointError,
    DeviceUnavailable,
    Sam2InputError,
    Sam2OutOfMemory,
    Sam2Propagator,
    build_sam2_propagator,
    exclusive_ids,
    fold_wrap,
    load_model,
    resolve_device,
    sha256_of,
    wrap_pad,
)
from tasks.config import PipelineConfig
from tasks.errors import ConfigError, NotEquirectangular, PermanentError, TransientError
from tasks.formats import idmap as idmap_png
from tasks.storage import LocalStore
from tasks.synth import build_scene, render_frames

S = 128      # SAM2 input size for the tests
W, H = 128, 64


@pytest.fixture(scope="module", autouse=True)
def _threads():
    """Two threads: the size of the CI machine, and results do not depend on the thread count
    chosen by another test module."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def clip():
    """Frames and ground-truth id maps of a deterministic synthetic 128x64 clip (the scene has
    an object crossing the seam)."""
    sc = build_scene(seconds=2.0, fps=10, width=W, seed=0, objects=4)
    return [(rgb, ids) for rgb, ids in render_frames(sc)]


def prompt_of(ids: np.ndarray, keep: tuple[int, ...]) -> np.ndarray:
    out = np.where(np.isin(ids, keep), ids, 0).astype(np.uint16)
    assert set(np.unique(out).tolist()) - {0} == set(keep)
    return out


def make(**kw) -> Sam2Propagator:
    kw.setdefault("image_size", S)
    kw.setdefault("device", "cpu")
    return Sam2Propagator("tiny", allow_random_weights=True, **kw)


# -- seam fold and exclusive ids on synthetic logits ----------------------------------------------
def test_fold_inverts_wrap_padding_and_ors_the_duplicated_strips():
    x = torch.randn(3, 5, 40)
    assert torch.equal(fold_wrap(wrap_pad(x, 5), 5), x)          # identical copies: nothing changes
    padded = torch.full((1, 4, 50), -5.0)                        # W = 40, pad = 5
    padded[0, :, 0:5] = 3.0      # seen only in the left strip = ERP columns 35..39
    padded[0, :, 45:50] = 2.0    # seen only in the right strip = ERP columns 0..4
    out = fold_wrap(padded, 5)[0]
    assert out.shape == (4, 40)
    assert (out[:, 35:40] == 3.0).all() and (out[:, 0:5] == 2.0).all() and (out[:, 5:35] == -5.0).all()
    mask = out > 0
    assert mask[:, :5].all() and mask[:, 35:].all() and not mask[:, 5:35].any()  # the OR of both copies


def test_exclusive_ids_threshold_and_highest_logit_wins():
    lg = torch.tensor([[[1.0, 3.0, -1.0, 0.0]], [[2.0, 1.0, -0.5, 0.0]]])  # (2 objects, 1, 4)
    best, owner = exclusive_ids(lg, [7, 9])
    assert owner.tolist() == [[9, 7, 0, 0]]  # > 0 only, highest wins
    _, owner = exclusive_ids(torch.tensor([[[1.0]], [[1.0]]]), [4, 2])
    assert owner.tolist() == [[4]]  # a tie goes to the first


def test_object_crossing_the_seam_gets_one_id_in_the_composed_map():
    """The real composition path (upsample, fold, exclusive ids) on hand-made low-res logits:
    object 5 is seen through the left padding strip and the left border, object 9 elsewhere."""
    p = make()
    low = S // 4                              # 32 low-res columns over the padded width 160
    a = torch.full((1, low, low), -10.0)
    a[0, 8:20, 0:6] = 10.0                    # padded cols 0..30 = ERP cols 112..127 and 0..14
    b = torch.full((1, low, low), -10.0)
    b[0, 8:20, 12:18] = 10.0
    idm = p._compose({5: a, 9: b}, H, W)
    assert idm.dtype == np.uint16 and idm.shape == (H, W)
    assert set(np.unique(idm).tolist()) == {0, 5, 9}
    rows = slice(24, 36)
    assert (idm[rows, :8] == 5).all() and (idm[rows, -8:] == 5).all()   # both sides of the seam, one id
    seam_cols = np.r_[0:16, W - 16:W]
    assert set(np.unique(idm[:, seam_cols]).tolist()) <= {0, 5}


def test_seam_crossing_prompt_is_contiguous_in_the_padded_model_input(clip):
    p = make()
    ids = np.zeros((H, W), np.uint16)
    ids[20:40, W - 6:] = 3
    ids[20:40, :6] = 3                        # one object across the left/right border
    m = p._prompt_masks(ids, [3])[3]
    assert m.shape == (S, S) and m.dtype == torch.float32
    cols = torch.nonzero(m.any(dim=0)).flatten().tolist()
    # padded frame: [cols 112..127 | 0..127 | 0..15]; the object shows at both padded borders and
    # is contiguous over each of them (the strips continue the frame)
    pad = 16
    scale = S / (W + 2 * pad)
    left_run = [c for c in cols if c < S // 2]
    right_run = [c for c in cols if c >= S // 2]
    assert left_run and right_run
    assert left_run == list(range(left_run[0], left_run[-1] + 1))
    assert left_run[0] <= (pad - 6) * scale + 1 and left_run[-1] >= (pad + 6) * scale - 2


# -- the real model path ------------------------------------------------------------------------
def test_prompts_in_masks_out_on_every_frame_deterministic(clip):
    prompt = prompt_of(clip[0][1], (2, 3, 4))
    runs = []
    for _ in range(2):
        p = make(chunk_frames=4)
        p.reset(clip[0][0], prompt)
        runs.append(list(p.step_many(rgb for rgb, _ in clip[1:9])))
    assert len(runs[0]) == 8
    for idm in runs[0]:
        assert idm.dtype == np.uint16 and idm.shape == (H, W)
        assert set(np.unique(idm).tolist()) <= {0, 2, 3, 4}
    assert all(np.array_equal(a, b) for a, b in zip(*runs))
    # step() and step_many() are the same computation; batching the image encoder changes the
    # float rounding only (a few pixels whose random-weight logit is ~0 may flip)
    p = make(chunk_frames=1)
    p.reset(clip[0][0], prompt)
    singles = [p.step(rgb) for rgb, _ in clip[1:5]]
    assert all((a == b).mean() > 0.995 for a, b in zip(singles, runs[0][:4]))


@pytest.mark.filterwarnings("ignore:cannot import name '_C':UserWarning")
def test_streaming_engine_matches_the_stock_video_predictor(clip, tmp_path):
    """Same weights, same preprocessed frames: our bounded stream gives the stock predictor's
    logits on every frame (past max_obj_ptrs, where eviction starts to matter), while the stock
    state keeps every frame."""
    from PIL import Image

    p = make()
    model = p.model
    n = 20
    with torch.inference_mode():
        images = p._images([rgb for rgb, _ in clip[:n]])
        masks = p._prompt_masks(prompt_of(clip[0][1], (2, 3)), [2, 3])
        for i in range(n):
            Image.new("RGB", (S, S)).save(tmp_path / f"{i:05d}.jpg")
        state = model.init_state(video_path=str(tmp_path))
        state["images"] = images.clone()   # our preprocessing, so that only the tracking differs
        state["cached_features"] = {}
        for k, m in masks.items():
            model.add_new_mask(state, 0, k, m.bool())
        for _ in model.propagate_in_video(state):
            pass
        stream = Sam2Stream(model)
        stream.add_masks(0, encode_frames(model, images[:1])[0], masks)
        stream.evict(1)
        worst = 0.0
        for t in range(1, n):
            got = stream.track(t, encode_frames(model, images[t:t + 1])[0])
            stream.evict(t + 1)
            for k in masks:
                ref = state["output_dict_per_obj"][state["obj_id_to_idx"][k]]["non_cond_frame_outputs"][t]
                worst = max(worst, float((got[k] - ref["pred_masks"][0]).abs().max()))
    assert worst < 1e-4
    stock_kept = len(state["output_dict_per_obj"][0]["non_cond_frame_outputs"])
    assert stock_kept == n - 1                                     # the stock state grows with the video
    assert stream.stats()["max_entries"] < stock_kept


def test_memory_stays_bounded_as_the_video_grows(clip):
    p = make(max_cond_frames=2, chunk_frames=4)
    spec = MemorySpec.of(p.model, 2)
    bound = spec.bound
    assert bound == {"cond": 2, "full": p.model.num_maskmem - 1,
                     "pointer_only": p.model.max_obj_ptrs_in_encoder - p.model.num_maskmem}
    frames = [rgb for rgb, _ in clip]
    p.reset(frames[0], prompt_of(clip[0][1], (2, 3)))
    sizes = []
    for i in range(1, 48):
        rgb, truth = clip[i % len(clip)]
        p.step(rgb)
        if i % 10 == 0:   # refine-style correction on the frame just returned: a conditioning frame
            p.reset(rgb, np.where(np.isin(truth, (2, 3)), truth, 0).astype(np.uint16))
        st = p.stats()
        assert st["max_cond"] <= bound["cond"]
        assert st["max_full"] <= bound["full"]
        assert st["max_pointer_only"] <= bound["pointer_only"]
        assert st["max_entries"] <= bound["cond"] + bound["full"] + bound["pointer_only"]
        sizes.append(st["bytes"])
    st = p.stats()
    assert st["max_cond"] == 2                       # 4 resets, the 2 most recent are kept
    assert st["max_full"] == bound["full"]          # the memory bank is full ...
    assert max(sizes[24:]) <= max(sizes[:24])       # ... and no longer grows
    assert sum(p._stream.objects[2].counts().values()) <= p.model.num_maskmem + p.model.max_obj_ptrs_in_encoder
    # frames: the chunk being processed and the last frame (for a reset on it), no more
    assert st["max_frames_buffered"] <= p.chunk_frames
    list(p.step_many(frames[:10]))
    assert p.stats()["max_frames_buffered"] <= 4


def test_reset_adds_new_ids_and_drops_removed_visible_ones(clip, monkeypatch):
    p = make(max_hidden_frames=2)
    rgb0, ids0 = clip[0]
    p.reset(rgb0, prompt_of(ids0, (2, 3)))
    calls = []
    orig = p.model.forward_image
    monkeypatch.setattr(p.model, "forward_image", lambda x: calls.append(x.shape[0]) or orig(x))
    out = p.step(clip[1][0])
    assert calls == [1]
    # refine's correction on the frame just returned: no re-encoding; id 4 is new, id 2 removed
    new_map = prompt_of(ids0, (3, 4))
    p._visible = {2, 3}   # as if SAM2 had shown both (random weights decide what it shows)
    p.reset(clip[1][0], new_map)
    assert calls == [1]                                   # the frame's features were reused
    assert set(p._stream.objects) == {3, 4}
    assert list(p._stream.objects[3].cond) == [0, 1]      # a second conditioning frame at t=1
    assert 1 not in p._stream.objects[3].non_cond         # which replaced its tracked output
    out = p.step(clip[2][0])
    assert set(np.unique(out).tolist()) <= {0, 3, 4}


def test_occluded_object_is_kept_for_max_hidden_frames(clip, monkeypatch):
    """An id SAM2 itself predicts absent survives a reset that lacks it (it may come back),
    for max_hidden_frames frames."""
    p = make(max_hidden_frames=2)
    rgb0, ids0 = clip[0]
    p.reset(rgb0, prompt_of(ids0, (2, 3)))
    orig = p._stream.track

    def occlude_2(t, feats, obj_ids=None):
        out = orig(t, feats, obj_ids)
        if 2 in out:
            out[2] = torch.full_like(out[2], -1024.0)   # SAM2's NO_OBJ_SCORE
        return out

    monkeypatch.setattr(p._stream, "track", occlude_2)
    out = p.step(clip[1][0])
    assert 2 not in np.unique(out) and p.stats()["hidden"] == {2: 1}
    p.reset(clip[1][0], np.where(out == 3, 3, 0).astype(np.uint16))
    assert 2 in p._stream.objects                      # hidden, not removed by the reset
    p.step(clip[2][0])
    assert 2 in p._stream.objects
    p.step(clip[3][0])
    assert 2 not in p._stream.objects and 2 not in p.stats()["hidden"]   # hidden 3 > 2 frames


def test_a_forgotten_hidden_object_leaves_the_memory(clip, monkeypatch):
    """An id merged into another object (refine) is forgotten, hidden or not."""
    p = make(max_hidden_frames=5)
    rgb0, ids0 = clip[0]
    p.reset(rgb0, prompt_of(ids0, (2, 3)))
    orig = p._stream.track
    monkeypatch.setattr(p._stream, "track", lambda t, feats, obj_ids=None: {
        k: (torch.full_like(v, -1024.0) if k == 2 else v) for k, v in orig(t, feats, obj_ids).items()})
    out = p.step(clip[1][0])
    assert p.stats()["hidden"] == {2: 1}
    p.forget([2])
    assert 2 not in p._stream.objects and p.stats()["hidden"] == {}
    assert 2 not in np.unique(p.step(clip[2][0])) and 3 in np.unique(out)


def test_empty_prompt_is_a_no_op(clip, monkeypatch):
    p = make()
    calls = []
    orig = p.model.forward_image
    monkeypatch.setattr(p.model, "forward_image", lambda x: calls.append(1) or orig(x))
    p.reset(clip[0][0], np.zeros((H, W), np.uint16))
    n_reset = len(calls)
    for rgb, _ in clip[1:4]:
        out = p.step(rgb)
        assert out.dtype == np.uint16 and out.shape == (H, W) and not out.any()
    assert len(calls) == n_reset          # no model call while there is nothing to track
    p.reset(clip[4][0], prompt_of(clip[4][1], (3,)))
    assert set(np.unique(p.step(clip[5][0])).tolist()) <= {0, 3}


def test_resume_from_the_last_written_id_map(clip):
    """Interrupted after frame 5: a fresh propagator reset from the written map of frame 5
    continues (valid ids, every frame), and a resume is itself deterministic."""
    frames = [rgb for rgb, _ in clip]
    p = make()
    p.reset(frames[0], prompt_of(clip[0][1], (2, 3, 4)))
    written = {0: idmap_png.encode_png(prompt_of(clip[0][1], (2, 3, 4)))}
    for t in range(1, 6):
        written[t] = idmap_png.encode_png(p.step(frames[t]))
    del p                                         # the worker dies here
    last = max(written)
    resumed = []
    for _ in range(2):
        q = make()
        start = idmap_png.decode_png(written[last])
        q.reset(frames[last], start)
        assert q.stats()["max_cond"] == 1 and q.stats()["max_full"] == 0
        resumed.append([q.step(frames[t]) for t in range(last + 1, last + 5)])
        for idm in resumed[-1]:
            assert idm.shape == (H, W) and set(np.unique(idm).tolist()) <= set(np.unique(start).tolist()) | {0}
    assert all(np.array_equal(a, b) for a, b in zip(*resumed))


# -- out of memory ------------------------------------------------------------------------------
def _oom_once(monkeypatch, obj, name, when=lambda *a: True):
    orig = getattr(obj, name)
    state = {"raised": 0}

    def patched(*args, **kw):
        if not state["raised"] and when(*args):
            state["raised"] += 1
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return orig(*args, **kw)

    monkeypatch.setattr(obj, name, patched)
    return state


def test_oom_while_encoding_a_chunk_retries_with_a_smaller_chunk(clip, monkeypatch, caplog):
    frames = [rgb for rgb, _ in clip[:9]]
    prompt = prompt_of(clip[0][1], (2, 3))
    ref = make(chunk_frames=2)
    ref.reset(frames[0], prompt)
    expected = list(ref.step_many(frames[1:]))
    p = make(chunk_frames=4)
    p.reset(frames[0], prompt)
    state = _oom_once(monkeypatch, p.model, "forward_image", when=lambda x: x.shape[0] > 2)
    with caplog.at_level(logging.WARNING):
        got = list(p.step_many(frames[1:]))
    assert state["raised"] == 1 and p.oom_events == 1 and p.chunk_frames == 2
    assert "retrying with chunks of 2 frames" in caplog.text
    assert len(got) == len(expected) and all(np.array_equal(a, b) for a, b in zip(got, expected))


def test_oom_while_tracking_retries_the_frame_without_double_counting(clip, monkeypatch):
    frames = [rgb for rgb, _ in clip[:8]]
    prompt = prompt_of(clip[0][1], (2, 3))
    ref = make(chunk_frames=1)
    ref.reset(frames[0], prompt)
    expected = [ref.step(f) for f in frames[1:]]
    p = make(chunk_frames=1)
    p.reset(frames[0], prompt)
    calls = {"n": 0}

    def third_call(*a):
        calls["n"] += 1
        return calls["n"] == 3

    _oom_once(monkeypatch, p._stream, "track", when=third_call)
    got = list(p.step_many(frames[1:]))   # frame 3 fails once and is tracked again
    assert p.oom_events == 1 and calls["n"] == 3
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))
    assert p.stats()["max_entries"] == ref.stats()["max_entries"]


def test_oom_at_one_frame_is_retried_once_then_raised(clip, monkeypatch):
    p = make(chunk_frames=1)
    p.reset(clip[0][0], prompt_of(clip[0][1], (2,)))
    state = _oom_once(monkeypatch, p.model, "forward_image")
    p.step(clip[1][0])                    # one OOM at one frame: retried after emptying the cache
    assert state["raised"] == 1 and p.oom_events == 1

    def always(*a, **kw):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(p.model, "forward_image", always)
    with pytest.raises(Sam2OutOfMemory, match="even one frame at a time") as err:
        p.step(clip[2][0])
    assert isinstance(err.value, TransientError)


# -- bad inputs -----------------------------------------------------------------------------------
def test_bad_frames_and_prompts_raise_typed_errors(clip):
    p = make()
    rgb, ids = clip[0]
    with pytest.raises(RuntimeError, match="before reset"):
        p.step(rgb)
    with pytest.raises(Sam2InputError, match="frame's resolution") as err:
        p.reset(rgb, np.zeros((H // 2, W // 2), np.uint16))
    assert isinstance(err.value, PermanentError) and isinstance(err.value, ValueError)
    with pytest.raises(Sam2InputError, match="integer track ids"):
        p.reset(rgb, ids.astype(np.float32))
    with pytest.raises(Sam2InputError, match="1..65535"):
        p.reset(rgb, ids.astype(np.int32) - 5)
    with pytest.raises(NotEquirectangular):
        p.reset(np.zeros((64, 100, 3), np.uint8), np.zeros((64, 100), np.uint16))
    with pytest.raises(Sam2InputError, match="RGB uint8"):
        p.reset(rgb.astype(np.float32), ids)
    p.reset(rgb, prompt_of(ids, (2,)))
    with pytest.raises(Sam2InputError, match="reset with the new size"):
        p.step(np.zeros((32, 64, 3), np.uint8))


def test_device_selection(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(DeviceUnavailable, match="sees no CUDA device") as err:
        resolve_device("cuda")
    assert isinstance(err.value, PermanentError)
    with pytest.raises(DeviceUnavailable):
        Sam2Propagator("tiny", device="cuda", image_size=S, allow_random_weights=True)
    with pytest.raises(ConfigError, match="auto, cuda or cpu"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto").type == "cuda"
    with pytest.raises(DeviceUnavailable, match="1 CUDA device"):
        resolve_device("cuda:3")


def test_no_warning_from_the_propagator_on_cpu(clip, caplog):
    p = make()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p.reset(clip[0][0], prompt_of(clip[0][1], (2,)))
        p.step(clip[1][0])
    assert not [w for w in caught if "_C" in str(w.message) or "post-processing" in str(w.message)]
    # where hole filling is attempted and the extension fails, the warning is caught and the
    # post-process switched off with one log line, instead of a warning per frame
    p._fill_holes = 8
    with caplog.at_level(logging.WARNING), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p.step(clip[2][0])
        p.step(clip[3][0])
    assert not caught and p._fill_holes == 0
    assert caplog.text.count("hole filling failed") == 1


# -- weights ---------------------------------------------------------------------------------------
def test_production_without_a_checkpoint_refuses_random_weights():
    with pytest.raises(CheckpointError, match="sam2_checkpoint is not set"):
        Sam2Propagator("tiny", device="cpu", image_size=S)
    cfg = PipelineConfig().with_overrides({"propagate.backend": "sam2", "propagate.sam2_model": "tiny",
                                           "propagate.sam2_image_size": S, "propagate.sam2_device": "cpu"})
    with pytest.raises(CheckpointError):
        build_sam2_propagator(cfg, W)
    p = build_sam2_propagator(cfg, W, allow_random_weights=True)
    assert isinstance(p, Propagator) and p.hidden_objects((H, W)) == {}
    assert p.name == "sam2" and p.image_size == S and p.chunk_frames == cfg.propagate.sam2_chunk_frames
    with pytest.raises(ConfigError, match="multiple of 32"):
        Sam2Propagator("tiny", device="cpu", image_size=100, allow_random_weights=True)


def test_checkpoint_checksum_is_checked_before_loading(tmp_path, monkeypatch):
    bad = tmp_path / "sam2.1_hiera_tiny.pt"
    bad.write_bytes(b"not a checkpoint" * 100)

    def no_load(*a, **kw):
        raise AssertionError("torch.load must not run on an unverified file")

    monkeypatch.setattr(torch, "load", no_load)
    # issue 12 §9: a refusal never prints a checksum (the expected one, or the file's own to paste back)
    with pytest.raises(CheckpointError, match="does not have the sha256") as err:
        Sam2Propagator("tiny", device="cpu", image_size=S, checkpoint=str(bad), checkpoint_sha256="0" * 64)
    assert "0" * 64 not in str(err.value) and sha256_of(bad) not in str(err.value)
    with pytest.raises(CheckpointError, match="models import DIR --name NAME") as err:
        Sam2Propagator("tiny", device="cpu", image_size=S, checkpoint=str(bad))
    assert sha256_of(bad) not in str(err.value) and sha256_of(bad)[:16] not in str(err.value)
    with pytest.raises(CheckpointError, match="does not exist"):
        Sam2Propagator("tiny", device="cpu", image_size=S, checkpoint=str(tmp_path / "missing.pt"),
                       checkpoint_sha256="0" * 64)
    store = LocalStore(tmp_path / "store")
    with pytest.raises(CheckpointError, match="neither a model of the store"):
        Sam2Propagator("tiny", device="cpu", image_size=S, checkpoint="models/sam2.1_hiera_tiny.pt",
                       checkpoint_sha256="0" * 64, store=store)
    with pytest.raises(CheckpointError, match="no store was given"):
        Sam2Propagator("tiny", device="cpu", image_size=S, checkpoint="sam2.1_hiera_tiny.pt",
                       checkpoint_sha256="0" * 64)


def test_checkpoint_from_the_model_store_loads_verified_weights(tmp_path):
    """A random tiny model saved like a release checkpoint, uploaded under models/: loaded with
    its checksum; a checkpoint of another shape is refused with a typed error."""
    ref = load_model("tiny", image_size=S, device=torch.device("cpu"), allow_random_weights=True, seed=7)
    sd = {k: v.half() for k, v in ref.state_dict().items()}        # half precision: half the file
    local = tmp_path / "ckpt.pt"
    torch.save({"model": sd}, local)
    store = LocalStore(tmp_path / "store")
    store.put_file("models/sam2.1_hiera_tiny.pt", local)
    digest = sha256_of(local)
    p = Sam2Propagator("tiny", device="cpu", image_size=S, checkpoint="sam2.1_hiera_tiny.pt",
                       checkpoint_sha256=digest, store=store)
    name, param = next(iter(p.model.state_dict().items()))
    assert torch.equal(param, sd[name].float())
    wrong = tmp_path / "wrong.pt"
    torch.save({"model": {"not_a_sam2_key": torch.zeros(1)}}, wrong)
    with pytest.raises(CheckpointError, match="does not fit the tiny model"):
        Sam2Propagator("tiny", device="cpu", image_size=S, checkpoint=str(wrong), checkpoint_sha256=sha256_of(wrong))


def test_checkpoint_by_model_name_loads_through_the_model_store(tmp_path, monkeypatch):
    """Issue 13 §3: ``propagate.sam2_checkpoint`` names a model imported with ``models import``;
    the file is checked against the manifest and cached, no sha256 setting needed; a model
    imported for another class, a stale sha256 setting or a tampered store copy are refused."""
    from tasks.models import ModelCorrupt, ModelMismatch, import_model

    monkeypatch.setenv("LEADER360V_MODEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LEADER360V_MODELS_DIR", raising=False)
    ref = load_model("tiny", image_size=S, device=torch.device("cpu"), allow_random_weights=True, seed=11)
    sd = {k: v.half() for k, v in ref.state_dict().items()}
    folder = tmp_path / "download"
    folder.mkdir()
    torch.save({"model": sd}, folder / "sam2.1_hiera_tiny.pt")
    store = LocalStore(tmp_path / "store")
    m = import_model(store, folder, "sam2.1-hiera-tiny", source="https://example.org/sam2", license="apache-2.0")
    assert m.loader.endswith("SAM2Base")
    cfg = PipelineConfig().with_overrides({"propagate.backend": "sam2", "propagate.sam2_model": "tiny",
                                           "propagate.sam2_image_size": S, "propagate.sam2_device": "cpu",
                                           "propagate.sam2_checkpoint": "sam2.1-hiera-tiny"})
    p = build_sam2_propagator(cfg, W, store=store)
    name, param = next(iter(p.model.state_dict().items()))
    assert torch.equal(param, sd[name].float())
    assert (tmp_path / "cache" / "sam2.1-hiera-tiny" / m.version / "sam2.1_hiera_tiny.pt").is_file()

    stale = m.files[0].sha256[::-1]
    with pytest.raises(CheckpointError, match="not the checkpoint") as err:
        Sam2Propagator("tiny", device="cpu", image_size=S, checkpoint="sam2.1-hiera-tiny", checkpoint_sha256=stale,
                       store=store)
    assert m.files[0].sha256 not in str(err.value) and stale not in str(err.value)

    import_model(store, folder, "not-sam2", loader="transformers.OneFormerForUniversalSegmentation")
    with pytest.raises(ModelMismatch, match="imported for transformers.OneFormerForUniversalSegmentation") as err:
        Sam2Propagator("tiny", device="cpu", image_size=S, checkpoint="not-sam2", store=store)
    assert err.value.exit_code == 2

    key = f"models/sam2.1-hiera-tiny/{m.version}/sam2.1_hiera_tiny.pt"
    data = bytearray(store.get_bytes(key))
    data[-100] ^= 0xFF
    store.put_bytes(key, bytes(data))
    shutil.rmtree(tmp_path / "cache")
    sam2_propagator._MODEL_CACHE.clear()    # the process keeps a loaded model; a new pod starts empty
    with pytest.raises(ModelCorrupt, match="sam2.1_hiera_tiny.pt has other content") as err:
        Sam2Propagator("tiny", device="cpu", image_size=S, checkpoint="sam2.1-hiera-tiny", store=store)
    assert err.value.exit_code == 7 and m.files[0].sha256 not in str(err.value)


# -- camera de-rotation (issue #10 §2) -----------------------------------------------------------
PW, PH = 512, 256   # real panorama frames: the camera-motion estimator needs real texture


@pytest.fixture(scope="module")
def pano(shared_data) -> np.ndarray:
    import cv2

    im = cv2.imread(str(shared_data / "erp_images" / "pannellum_examplepano_4096x2048.jpg"), cv2.IMREAD_REDUCED_COLOR_4)
    return np.ascontiguousarray(cv2.resize(im, (PW, PH), interpolation=cv2.INTER_AREA)[:, :, ::-1])


def _pano_prompt() -> np.ndarray:
    """Two regions of the still panorama: one across the seam, one at latitude ~55 deg."""
    ids = np.zeros((PH, PW), np.uint16)
    ids[110:150, PW - 30:] = 1
    ids[110:150, :25] = 1
    ids[40:60, 200:280] = 2
    return ids


def _rotations() -> list[np.ndarray]:
    from tasks.geometry.camera_motion import compose
    from tasks.geometry.rotation import rotation_matrix

    steps = [(8, 3, -3), (6, -4, 4), (-5, 5, 4), (10, 2, -5)]   # a shaky handheld path, degrees
    out, R = [np.eye(3)], np.eye(3)
    for s in steps:
        R = compose(R, rotation_matrix(*np.radians(s)))
        out.append(R)
    return out


def _iou(a, b) -> float:
    a, b = np.asarray(a).astype(bool), np.asarray(b).astype(bool)
    return float((a & b).sum() / max(1, (a | b).sum()))


def _spy(p: Sam2Propagator, monkeypatch) -> dict[str, list]:
    """Record the model inputs (frames as SAM2 sees them, and prompt masks) and make SAM2 answer
    the reference frame's prompt on every frame — what a perfect tracker of the de-rotated still
    scene answers (random weights answer nothing meaningful); the rest of the path (upsampling,
    seam fold, exclusive ids, rotation back) is the real one."""
    import tasks.backends.sam2_propagator as mod

    answer: dict[int, torch.Tensor] = {}
    seen: dict = {"inputs": [], "prompts": [], "answer": answer}
    encode, prompt_masks = mod.encode_frames, p._prompt_masks

    def encode_spy(model, images):
        seen["inputs"].extend(images[i].clone() for i in range(images.shape[0]))
        return encode(model, images)

    def prompts_spy(idmap, ids, orient=None):
        out = prompt_masks(idmap, ids, orient)
        seen["prompts"].append(out)
        if not answer:   # the first prompt (the reference frame) as low-res logits
            for k, m in out.items():
                low = F.interpolate(m[None, None], size=(S // 4, S // 4), mode="area")[0]
                answer[k] = torch.where(low > 0.5, 10.0, -10.0)
        return out

    monkeypatch.setattr(mod, "encode_frames", encode_spy)
    monkeypatch.setattr(p, "_prompt_masks", prompts_spy)
    monkeypatch.setattr(p._stream, "track", lambda t, feats, obj_ids=None: {
        k: answer[k].clone() for k in p._stream.objects})
    return seen


def test_rotate_erp_tensor_matches_rotate_erp(pano):
    """The device-side rotation samples what tasks.geometry.rotation.rotate_erp samples."""
    from tasks.backends.sam2_propagator import rotate_erp_tensor
    from tasks.geometry.rotation import rotate_erp, rotation_matrix

    for R in (rotation_matrix(*np.radians((10, 5, -3))), rotation_matrix(*np.radians((170, -60, 40)))):
        ref = rotate_erp(pano, R).astype(np.float32)
        got = rotate_erp_tensor(torch.from_numpy(pano).permute(2, 0, 1)[None].float(), R)[0].permute(1, 2, 0).numpy()
        assert np.abs(got - ref).mean() < 0.5                   # OpenCV's 1/32-px weights vs exact
        ids = _pano_prompt()
        got_ids = rotate_erp_tensor(torch.from_numpy(ids.astype(np.float32))[None, None], R, "nearest")[0, 0]
        assert (got_ids.round().numpy().astype(np.uint16) == rotate_erp(ids, R)).mean() > 0.999


def test_derotation_shows_sam2_a_still_camera_and_rotates_masks_back(pano, monkeypatch):
    """A still real panorama seen through a turning camera: SAM2's input is every frame at the
    first frame's orientation, and the id map it gives there comes back at each frame's own
    orientation (both ids, one across the seam); a prompt on a later frame reaches SAM2
    de-rotated too."""
    from tasks.geometry.rotation import rotate_erp

    Rs = _rotations()
    frames = [rotate_erp(pano, R) for R in Rs]
    prompt = _pano_prompt()
    truth = [rotate_erp(prompt, R) for R in Rs]      # the prompt on each frame
    p = make(derotate=True, chunk_frames=2)
    seen = _spy(p, monkeypatch)
    p.reset(frames[0], prompt)
    out = list(p.step_many(frames[1:4]))
    plain = make()
    # SAM2's answer as an id map at the reference orientation (at S = 128 its 32 low-res cells
    # are 20 ERP columns wide: the prompt's shape is only roughly kept, whatever the rotation)
    answer_map = p._compose({k: v.clone() for k, v in seen["answer"].items()}, PH, PW)
    for t, idm in enumerate(out, start=1):
        assert idm.dtype == np.uint16 and idm.shape == (PH, PW)
        expected = rotate_erp(answer_map, Rs[t])
        for k in (1, 2):
            assert _iou(idm == k, expected == k) > 0.97, (t, k)                # rotated back exactly
            assert _iou(idm == k, answer_map == k) < 0.9      # it moved with the camera
        if (truth[t][:, :4] == 1).any() and (truth[t][:, -4:] == 1).any():   # still across the seam
            assert (idm[:, :4] == 1).any() and (idm[:, -4:] == 1).any()
        # SAM2's input is the first frame's, not the rotated frame's
        ref, raw = seen["inputs"][0], plain._images([frames[t]])[0]
        assert (seen["inputs"][t] - ref).abs().mean() < 0.5 * (raw - ref).abs().mean()
    assert p.last_motion.ok and angle_deg(p.last_motion.rotation, Rs[3] @ Rs[2].T) < 0.5
    # a prompt on a new frame (t = 4): SAM2 receives it at the reference orientation
    p.reset(frames[4], truth[4])
    first, last = seen["prompts"][0], seen["prompts"][-1]
    assert set(last) == {1, 2} and all(_iou(last[k] > 0, first[k] > 0) > 0.85 for k in (1, 2))
    assert _iou(p.step(frames[4]) > 0, rotate_erp(answer_map, Rs[4]) > 0) > 0.97


def angle_deg(A, B) -> float:
    from tasks.geometry.camera_motion import angle_between_deg

    return angle_between_deg(A, B)


def test_derotation_is_the_identity_for_a_still_camera(pano):
    """Identical frames: nothing is resampled, and the masks are bit-identical to those of the
    propagator without de-rotation (the real random-weight model runs)."""
    frames = [pano] * 3
    runs = []
    for derotate in (False, True):
        p = make(derotate=derotate)
        p.reset(frames[0], _pano_prompt())
        runs.append(list(p.step_many(frames[1:])))
    assert all(np.array_equal(a, b) for a, b in zip(*runs))
    assert p.last_motion.ok and angle_deg(p.last_motion.rotation, np.eye(3)) < 0.01


def test_failed_rotation_estimates_fall_back_to_no_derotation(pano, monkeypatch):
    """Every estimate refused (as on a cut): frames go to SAM2 as they are and the masks equal
    the plain propagator's; the reason is kept for QA."""
    from tasks.geometry import camera_motion
    from tasks.geometry.rotation import rotate_erp

    frames = [rotate_erp(pano, R) for R in _rotations()[:3]]
    plain = make()
    plain.reset(frames[0], _pano_prompt())
    expected = list(plain.step_many(frames[1:]))
    monkeypatch.setattr(camera_motion, "estimate_rotation", lambda a, b, **kw: camera_motion.CameraMotion(
        np.eye(3), 0.0, 3, False, "cut"))
    p = make(derotate=True)
    p.reset(frames[0], _pano_prompt())
    got = list(p.step_many(frames[1:]))
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))
    assert p.last_motion.reason == "cut" and not p.last_motion.ok
    assert np.array_equal(p._last_orient, np.eye(3))


def test_a_grey_frame_keeps_the_orientation_and_the_next_frame_finds_it_again(pano, monkeypatch):
    """frame 2 is uniform grey (a lens cap, a fade): it keeps frame 1's orientation; frame 3 is
    matched to frame 1, the last textured frame, so its orientation is right again."""
    from tasks.geometry.rotation import rotate_erp

    Rs = _rotations()
    frames = [rotate_erp(pano, R) for R in Rs[:4]]
    frames[2] = np.full_like(pano, 128)
    p = make(derotate=True, chunk_frames=4)
    seen = _spy(p, monkeypatch)
    p.reset(frames[0], _pano_prompt())
    out = list(p.step_many(frames[1:]))
    assert p.last_motion.ok                                   # frame 3 against frame 1
    assert angle_deg(p._last_orient, Rs[3]) < 0.5
    answer_map = p._compose({k: v.clone() for k, v in seen["answer"].items()}, PH, PW)
    assert _iou(out[2] > 0, rotate_erp(answer_map, Rs[3]) > 0) > 0.97
    assert _iou(out[1] > 0, rotate_erp(answer_map, Rs[1]) > 0) > 0.97   # grey: frame 1's orientation


def test_oom_retry_keeps_the_measured_orientations(pano, monkeypatch):
    """A chunk retried after CUDA OOM is not re-measured (each frame's rotation is estimated once,
    in order) and gives the same masks."""
    from tasks.geometry import camera_motion
    from tasks.geometry.rotation import rotate_erp

    frames = [rotate_erp(pano, R) for R in _rotations()[:4]]
    ref = make(derotate=True, chunk_frames=2)
    ref.reset(frames[0], _pano_prompt())
    expected = list(ref.step_many(frames[1:]))
    calls = []
    orig = camera_motion.estimate_rotation
    monkeypatch.setattr(camera_motion, "estimate_rotation", lambda a, b, **kw: calls.append(1) or orig(a, b, **kw))
    p = make(derotate=True, chunk_frames=4)
    p.reset(frames[0], _pano_prompt())
    _oom_once(monkeypatch, p.model, "forward_image", when=lambda x: x.shape[0] > 2)
    got = list(p.step_many(frames[1:]))
    assert p.oom_events == 1 and len(calls) == len(frames) - 1
    assert all((a == b).mean() > 0.995 for a, b in zip(got, expected))


def test_derotation_setting():
    cfg = PipelineConfig()
    assert cfg.propagate.sam2_derotate is True
    off = cfg.with_overrides({"propagate.sam2_derotate": False, "propagate.sam2_model": "tiny",
                              "propagate.sam2_image_size": S, "propagate.sam2_device": "cpu"})
    assert build_sam2_propagator(off, W, allow_random_weights=True).derotate is False
    assert build_sam2_propagator(off.with_overrides({"propagate.sam2_derotate": True}), W,
                                 allow_random_weights=True).derotate is True
    assert off.hash != cfg.with_overrides({"propagate.sam2_model": "tiny", "propagate.sam2_image_size": S,
                                           "propagate.sam2_device": "cpu"}).hash

"""Issue 12 §6, §7, §9: every user mistake is refused with its exit code and one line -- no
traceback (that needs -vv) -- and whatever can be checked before the work is checked before it.

Each case is a real invocation of ``python -m tasks`` (in-process ``main``; the traceback and
-vv cases in a subprocess, where the interpreter prints what escapes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tasks.cli import main
from tasks.formats import rle, ytvis
from tasks.stages.ingest import content_id
from tasks.vocabulary import master
from tests.support.videos import pattern_video

W, H, N = 256, 128, 10   # pattern_video's defaults: 1 s at 10 fps


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return pattern_video(tmp_path_factory.mktemp("cli_errors") / "v.mp4")


def _cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tasks", *argv], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])


def _refused(capsys, code: int, *argv: str) -> str:
    """Run the CLI, expect ``code``, return stderr (one message, no traceback)."""
    got = main(list(argv))
    err = capsys.readouterr().err
    assert got == code, f"exit {got}, expected {code}: {err}"
    assert "Traceback" not in err
    return err


def _usage(capsys, *argv: str) -> str:
    """An argparse refusal: SystemExit(2) with the reason, before anything runs."""
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    return err


def _prompts_doc(uid: str, masks: dict[int, np.ndarray], frame: int = 0) -> dict:
    """A one-frame prompts document; ids -> masks (masks may overlap: written annotation by
    annotation, as a person's tool would)."""
    doc = ytvis.build_video(ytvis.VideoInfo(uid, W, H, N, 10.0), [np.zeros((H, W), np.uint16)] * N, {})
    cats = master().to_categories_json({"ball"})
    doc["categories"] = cats
    for k, (tid, m) in enumerate(masks.items(), start=1):
        segs = [None] * N
        segs[frame] = rle.encode(m)
        doc["annotations"].append({"id": k, "video_id": 1, "category_id": cats[0]["id"], "iscrowd": 0,
                                   "track_id": tid, "segmentations": segs})
    return doc


def _box(y0, y1, x0, x1) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


# -- store keys (§7) ----------------------------------------------------------------------------
def test_a_traversal_key_is_refused_by_every_command(tmp_path, video, capsys):
    store = str(tmp_path / "store")
    err = _refused(capsys, 2, "ingest", "--key", "raw/../../x.mp4", "--store", store)
    assert "invalid key" in err and "'..'" in err
    err = _refused(capsys, 2, "upload", str(video), "--key", "raw/../../x.mp4", "--store", store)
    assert "raw/../../x.mp4" in err
    assert not (tmp_path / "x.mp4").exists() and not any((tmp_path / "store").rglob("*.mp4"))


def test_a_backslash_in_a_key_is_refused_and_in_a_file_name_is_labeled(tmp_path, video, capsys):
    store = str(tmp_path / "store")
    err = _refused(capsys, 2, "upload", str(video), "--key", "raw\\clip.mp4", "--store", store)
    assert "backslash" in err
    # a file name is not a key: `label` names its raw object itself, so a backslash in the file's
    # name gets as far as the content (here: not a video, rejected with its reason)
    odd = tmp_path / "my\\clip.mp4"
    odd.write_bytes(b"not a video at all")
    err = _refused(capsys, 3, "label", str(odd), "--out", str(tmp_path / "o"), "--store", store, "--no-progress")
    assert "not_a_video" in err


def test_a_bad_video_id_or_run_is_a_usage_error(capsys):
    assert "16 lowercase hex" in _usage(capsys, "decode", "--video-id", "../../etc")
    assert "12 lowercase hex" in _usage(capsys, "qa", "--video-id", "0123456789abcdef", "--run", "x/../y")


# -- checks made before the work (§7) -----------------------------------------------------------
def _nothing_done(store: Path) -> None:
    assert not store.exists() or not any(p.is_file() for p in store.rglob("*")), "work started before the refusal"


def test_width_66_is_refused_before_any_work(tmp_path, video, capsys):
    store = tmp_path / "store"
    err = _refused(capsys, 2, "label", str(video), "--out", str(tmp_path / "o"), "--width", "66",
                   "--store", str(store), "--no-progress")
    assert "video.width must be even and a multiple of 4" in err and "try 64" in err
    _nothing_done(store)
    assert _refused(capsys, 2, "config", "--set", "video.max_width=1022")


def test_out_that_is_a_file_is_refused_before_any_work(tmp_path, video, capsys):
    store = tmp_path / "store"
    out = tmp_path / "out.txt"
    out.write_text("keep me")
    err = _refused(capsys, 2, "label", str(video), "--out", str(out), "--store", str(store), "--no-progress")
    assert "is a file, not a folder" in err
    assert out.read_text() == "keep me"
    _nothing_done(store)
    err = _refused(capsys, 2, "label", str(video), "--out", str(out / "sub"), "--store", str(store), "--no-progress")
    assert "a part of that path is a file" in err


def test_read_only_out_is_refused_before_any_work(tmp_path, video, capsys):
    store = tmp_path / "store"
    if os.geteuid() == 0:
        # root ignores permission bits; sysfs refuses new files to everyone (a read-only place)
        out = Path("/sys/kernel/leader360v-out")
        if not Path("/sys/kernel").is_dir():
            pytest.skip("needs /sys/kernel or a non-root user to make a read-only folder")
    else:
        out = tmp_path / "ro"
        out.mkdir()
        out.chmod(0o555)
    err = _refused(capsys, 2, "label", str(video), "--out", str(out), "--store", str(store), "--no-progress")
    assert "cannot be written" in err and str(out) in err
    _nothing_done(store)


def test_evaluate_out_that_cannot_be_written(tmp_path, capsys):
    doc = ytvis.build_video(ytvis.VideoInfo("a" * 16, W, H, 2, 10.0), [np.zeros((H, W), np.uint16)] * 2, {})
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(doc))
    assert "is a folder" in _refused(capsys, 2, "evaluate", "--pred", str(gt), "--gt", str(gt), "--out", str(tmp_path))
    err = _refused(capsys, 2, "evaluate", "--pred", str(gt), "--gt", str(gt), "--out", str(tmp_path / "no" / "e.json"))
    assert "cannot write" in err


def test_a_video_too_small_for_the_stages_is_rejected_with_its_reason(tmp_path, capsys):
    """32x16 passed every check and crashed propagate's camera-motion step with a traceback."""
    tiny = pattern_video(tmp_path / "tiny.mp4", width=32, height=16)
    err = _refused(capsys, 3, "label", str(tiny), "--out", str(tmp_path / "o"), "--store", str(tmp_path / "s"),
                   "--no-progress")
    assert "too_small" in err and "at least 64x32" in err


def test_xcom_file_that_is_a_folder_is_refused_before_the_stage(tmp_path, video, capsys):
    store = str(tmp_path / "store")
    assert main(["upload", str(video), "--key", "raw/v.mp4", "--store", store]) == 0
    capsys.readouterr()
    err = _refused(capsys, 2, "ingest", "--key", "raw/v.mp4", "--store", store, "--xcom-file", str(tmp_path))
    assert "is a folder" in err
    assert not (tmp_path / "store" / "videos").exists()


# -- prompts (§6, §7) ---------------------------------------------------------------------------
def _label_with_prompts(tmp_path, video, capsys, doc) -> str:
    p = tmp_path / "prompts.json"
    p.write_text(json.dumps(doc))
    store = tmp_path / "store"
    err = _refused(capsys, 7, "label", str(video), "--out", str(tmp_path / "o"), "--prompts", str(p),
                   "--store", str(store), "--no-progress")
    _nothing_done(store)
    return err


def test_prompts_with_identical_masks_name_both_ids_and_the_frame(tmp_path, video, capsys):
    uid, _ = content_id(video)
    ball = _box(40, 80, 100, 140)
    err = _label_with_prompts(tmp_path, video, capsys, _prompts_doc(uid, {5: ball, 9: ball}, frame=3))
    assert "frame 3: tracks 5 and 9 have identical masks" in err


def test_prompts_with_overlapping_masks_name_both_ids_and_the_frame(tmp_path, video, capsys):
    uid, _ = content_id(video)
    err = _label_with_prompts(tmp_path, video, capsys,
                              _prompts_doc(uid, {5: _box(40, 80, 100, 140), 9: _box(60, 100, 120, 160)}))
    assert "frame 0: tracks 5 and 9 overlap on 400 px" in err


def test_prompts_made_for_another_video_are_refused(tmp_path, video, capsys):
    uid, _ = content_id(video)
    other = "0123456789abcdef"
    err = _label_with_prompts(tmp_path, video, capsys, _prompts_doc(other, {5: _box(40, 80, 100, 140)}))
    assert f"made for video {other}" in err and uid in err


def test_prompts_past_the_last_frame_are_refused_before_the_proposals(tmp_path, video, capsys):
    uid, _ = content_id(video)
    doc = _prompts_doc(uid, {5: _box(40, 80, 100, 140)}, frame=0)
    for a in doc["annotations"]:   # the document says 20 frames; the video has 10
        a["segmentations"] += [None] * 9 + [a["segmentations"][0]]
    doc["videos"][0]["length"] = 20
    p = tmp_path / "prompts.json"
    p.write_text(json.dumps(doc))
    store = tmp_path / "store"
    err = _refused(capsys, 7, "label", str(video), "--out", str(tmp_path / "o"), "--prompts", str(p),
                   "--store", str(store), "--no-progress")
    assert "a prompt is given for frame 19, but the video has 10 frames" in err
    assert list(store.rglob("decode/_MANIFEST.json")) and not list(store.rglob("propose/_MANIFEST.json"))


@pytest.mark.parametrize("counts", ["garbage!!", "", "\u00e9t\u00e9", [5], [-5, 32763], 12, ["a"], [1.5, 32766]])
def test_garbage_rle_counts_in_prompts(tmp_path, video, capsys, counts):
    uid, _ = content_id(video)
    doc = _prompts_doc(uid, {5: _box(40, 80, 100, 140)})
    doc["annotations"][0]["segmentations"][0]["counts"] = counts
    err = _label_with_prompts(tmp_path, video, capsys, doc)
    assert "track 5 frame 0" in err and "RLE" in err


# -- settings (§9) ------------------------------------------------------------------------------
@pytest.mark.parametrize("setting", ["refine.tau=Infinity", "refine.tau=NaN", "release.split_ratios=[NaN,0,1]",
                                     "video.fps=-Infinity", "qa.seam_color_tol=1e999"])
def test_non_finite_settings_are_refused(setting, capsys):
    assert "finite number" in _refused(capsys, 2, "config", "--set", setting)


def test_non_finite_numbers_in_a_config_file_are_refused(tmp_path, capsys):
    f = tmp_path / "c.json"
    f.write_text('{"refine": {"tau": Infinity}}')
    assert "refine.tau" in _refused(capsys, 2, "config", "--config", str(f))
    f = tmp_path / "c.yaml"
    f.write_text("release:\n  split_ratios: [.nan, 0, 1]\n")
    assert "release.split_ratios.0" in _refused(capsys, 2, "config", "--config", str(f))


@pytest.mark.parametrize("hours", ["0", "-1", "168.5", "nan", "inf", "soon"])
def test_review_expires_hours_out_of_range(hours, capsys):
    err = _usage(capsys, "review", "--video-id", "0123456789abcdef", "--expires-hours", hours)
    assert "--expires-hours" in err


def test_evaluate_refuses_another_video(tmp_path, capsys):
    maps = [np.zeros((H, W), np.uint16) for _ in range(2)]
    maps[0][10:20, 10:30] = 1
    docs = {}
    for name in ("a", "b"):
        doc = ytvis.build_video(ytvis.VideoInfo(name * 16, W, H, 2, 10.0), maps, {1: ytvis.TrackInfo(1, "ball")})
        docs[name] = tmp_path / f"{name}.json"
        docs[name].write_text(json.dumps(doc))
    err = _refused(capsys, 7, "evaluate", "--pred", str(docs["a"]), "--gt", str(docs["b"]))
    assert f"prediction is of video {'a' * 16} but the ground truth is of video {'b' * 16}" in err
    assert not (tmp_path / "evaluation.json").exists()


# -- the traceback only with -vv ----------------------------------------------------------------
def test_a_typed_error_prints_one_line_and_its_traceback_only_with_vv(tmp_path):
    argv = ["ingest", "--key", "raw/../../x.mp4", "--store", str(tmp_path / "s")]
    plain = _cli(*argv)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().splitlines() == [plain.stderr.strip()]     # one line
    assert "Traceback" not in _cli("-v", *argv).stderr
    loud = _cli("-vv", *argv)
    assert loud.returncode == 2 and "Traceback" in loud.stderr and "InvalidKey" in loud.stderr

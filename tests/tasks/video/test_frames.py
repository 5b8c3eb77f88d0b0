"""Issue 12, video input: display rotation and variable frame rate, on videos made with ffmpeg.

Every clip here is tiny (64x32 displayed, a few frames) so the whole file runs in seconds.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from tasks.errors import InputRejected
from tasks.video.frames import iter_frames
from tasks.video.probe import probe


def erp_picture(h: int = 32, w: int = 64) -> np.ndarray:
    """An upright test picture whose orientation is unmistakable: four coloured quadrants."""
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2, : w // 2] = (230, 30, 30)     # top-left red
    img[: h // 2, w // 2:] = (30, 230, 30)      # top-right green
    img[h // 2:, : w // 2] = (30, 30, 230)      # bottom-left blue
    img[h // 2:, w // 2:] = (230, 230, 30)      # bottom-right yellow
    return img


def encode(path, frames: list[np.ndarray], fps: float = 10.0, *, rotate: int | None = None,
           pts_ms: list[int] | None = None):
    """Encode RGB frames losslessly-ish (x264 qp 0, yuv444p); ``rotate`` writes a display matrix,
    ``pts_ms`` gives each frame its own timestamp (variable frame rate)."""
    h, w = frames[0].shape[:2]
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps),
           "-i", "-"]
    if pts_ms is not None:
        expr = "+".join(f"eq(N,{i})*{t}" for i, t in enumerate(pts_ms))
        cmd += ["-vf", f"settb=1/1000,setpts='{expr}'", "-fps_mode", "passthrough", "-enc_time_base", "1/1000",
                "-video_track_timescale", "1000"]
    cmd += ["-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p"]
    tmp = path.with_name("plain-" + path.name)
    cmd += [str(tmp if rotate is not None else path)]
    subprocess.run(cmd, input=b"".join(np.ascontiguousarray(f).tobytes() for f in frames), check=True)
    if rotate is not None:
        # what issue 12 did: `ffmpeg -i clip.mp4 -c copy -metadata:s:v:0 rotate=90 r.mp4`
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(tmp), "-c", "copy",
                        "-metadata:s:v:0", f"rotate={rotate}", str(path)], check=True)
    return path


def ffprobe_rotation(path) -> float | None:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-print_format", "json", str(path)],
                         capture_output=True, check=True).stdout
    for d in json.loads(out)["streams"][0].get("side_data_list", []):
        if d.get("side_data_type") == "Display Matrix":
            return float(d["rotation"])
    return None


def test_rotated_2to1_video_is_rejected_with_reason_rotated(tmp_path):
    """Coded 2:1 + rotate=90 is shown 1:2: not ERP as displayed. Before issue 12 it was squashed to 2:1."""
    path = encode(tmp_path / "r.mp4", [erp_picture()] * 4, rotate=90)
    assert ffprobe_rotation(path) in (90.0, -90.0)  # the display matrix is really there
    with pytest.raises(InputRejected) as e:
        probe(path)
    assert e.value.reason == "rotated"
    assert e.value.details["rotation"] in (90, 270) and "rotate=0" in e.value.message
    # 270 too
    with pytest.raises(InputRejected, match="display matrix rotates"):
        probe(encode(tmp_path / "r270.mp4", [erp_picture()] * 4, rotate=270))


@pytest.mark.parametrize("rotate", [90, 270])
def test_a_picture_displayed_2to1_by_its_rotation_is_decoded_upright(tmp_path, rotate):
    """Coded 1:2 (a phone held sideways) with a display matrix that shows it 2:1: the displayed
    picture is the ERP, frames come out upright and unsquashed."""
    upright = erp_picture()
    # code the picture turned the other way round than the display matrix turns it back (as ffmpeg
    # and players apply `rotate=R`: a quarter turn counter-clockwise per 90 degrees of R)
    coded = np.ascontiguousarray(np.rot90(upright, k=-(rotate // 90)))
    path = encode(tmp_path / f"side{rotate}.mp4", [coded] * 3, rotate=rotate)
    p = probe(path)
    assert (p.width, p.height, p.eye_width, p.rotation) == (64, 32, 64, rotate)
    frames = list(iter_frames(path, p, 64))
    assert len(frames) == 3
    err = np.abs(frames[0].astype(int) - upright.astype(int)).mean()
    wrong = np.abs(frames[0].astype(int) - upright[::-1, ::-1].astype(int)).mean()
    assert err < 8 and wrong > 60, (err, wrong)


def test_180_degree_rotation_is_applied(tmp_path):
    upright = erp_picture()
    path = encode(tmp_path / "flip.mp4", [np.ascontiguousarray(upright[::-1, ::-1])] * 2, rotate=180)
    p = probe(path)
    assert (p.width, p.height, p.rotation) == (64, 32, 180)
    [f0, _] = list(iter_frames(path, p, 64))
    assert np.abs(f0.astype(int) - upright.astype(int)).mean() < 8


def _numbered(n: int) -> list[np.ndarray]:
    """Frame i is uniformly grey level 10 * i + 5: a duplicate is visible as a repeated level."""
    return [np.full((32, 64, 3), 10 * i + 5, np.uint8) for i in range(n)]


def _levels(frames) -> list[int]:
    return [int(round((float(f.mean()) - 5) / 10)) for f in frames]


def vfr_clip(tmp_path):
    """20 frames: 10 at 10 fps then 10 at 50 fps (1.2 s of pictures; issue 12's 20 -> 40 case)."""
    pts = [100 * i for i in range(10)] + [1000 + 20 * i for i in range(10)]
    return encode(tmp_path / "vfr.mp4", _numbered(20), pts_ms=pts)


def test_vfr_without_fps_gives_every_frame_once(tmp_path):
    path = vfr_clip(tmp_path)
    p = probe(path)
    assert p.n_frames == 20
    frames = list(iter_frames(path, p, 64))
    assert _levels(frames) == list(range(20))  # no duplicates, none lost, in order
    # and the stream's average rate is what the frames are labeled at
    assert p.fps == pytest.approx(20 / p.duration, rel=0.02)


@pytest.mark.parametrize("fps", [5.0, 10.0, 25.0])
def test_vfr_with_fps_is_resampled_by_timestamps(tmp_path, fps):
    path = vfr_clip(tmp_path)
    p = probe(path)
    frames = list(iter_frames(path, p, 64, fps))
    assert abs(len(frames) - p.duration * fps) <= 1, (len(frames), p.duration)
    levels = _levels(frames)
    assert levels == sorted(levels)  # time runs forward
    if fps <= 10:
        # in the 10 fps half, output frame k (time k/fps) shows input frame floor(k * 10 / fps)
        first_half = [lv for k, lv in enumerate(levels) if k / fps < 0.95]
        assert first_half == [int(k * 10 / fps) for k in range(len(first_half))]
        assert len(set(levels)) == len(levels)  # resampling down never repeats a frame


def test_constant_rate_video_is_unchanged(tmp_path):
    path = encode(tmp_path / "cfr.mp4", _numbered(12), fps=12.0)
    p = probe(path)
    assert _levels(iter_frames(path, p, 64)) == list(range(12))
    assert _levels(iter_frames(path, p, 64, 12.0)) == list(range(12))

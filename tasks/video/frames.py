"""Decode an ERP video to frames (ffmpeg), and encode frames to an mp4 (ffmpeg + libx264).

Frames travel through a pipe as raw RGB so that memory stays bounded (one frame at a time) and a
progress bar can follow; nothing holds a whole video in memory.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tasks.errors import InputRejected, PipelineError
from tasks.video.probe import VideoProbe, require_ffmpeg

# What ffmpeg says when the stream's own bytes cannot be decoded. Past its error-rate limit
# (-max_error_rate, 2/3 of the frames) it then exits non-zero (69): that is damaged content, a
# rejection to quarantine, not "an error, a retry may help" (a retry decodes the same bytes).
_DAMAGED = re.compile(r"Error while decoding stream|Invalid data found when processing input|"
                      r"corrupt decoded frame|No JPEG data found|error while decoding MB")


def _filters(probe: VideoProbe, width: int, fps: float | None) -> str:
    height = width // 2
    f = []
    if probe.layout == "top-bottom":
        f.append(f"crop={probe.width}:{probe.height // 2}:0:0")
    elif probe.layout == "left-right":
        f.append(f"crop={probe.width // 2}:{probe.height}:0:0")
    downscale = width <= probe.eye_width and height <= probe.eye_height
    f.append(f"scale={width}:{height}:flags={'area' if downscale else 'bicubic'}")
    if fps is not None:
        f.append(f"fps={fps}")
    f.append("format=rgb24")
    return ",".join(f)


def iter_frames(path: str | Path, probe: VideoProbe, width: int, fps: float | None = None) -> Iterator[np.ndarray]:
    """Yield RGB uint8 frames of shape (width/2, width, 3): the (top/left) eye, resized to 2:1.

    The display matrix is applied (``-autorotate``, ffmpeg's default, said explicitly: the probe's
    sizes are the displayed ones). ``fps`` resamples by timestamps (the ``fps`` filter): a
    variable-frame-rate stream gives duration x fps frames, +-1. Without ``fps`` every decoded
    frame comes out exactly once (``-fps_mode passthrough``): the rawvideo muxer's default would
    fill a VFR stream's gaps at its highest rate with copies (issue 12: 20 frames in, 60 out).
    """
    require_ffmpeg()
    height = width // 2
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-autorotate", "1", "-i", str(path), "-map", "0:v:0", "-an", "-sn",
           "-vf", _filters(probe, width, fps), "-fps_mode", "passthrough",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    frame_bytes = width * height * 3
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    n = 0
    try:
        while True:
            buf = proc.stdout.read(frame_bytes)
            if not buf:
                break
            if len(buf) != frame_bytes:
                raise InputRejected("truncated", "the last frame of the video is incomplete")
            n += 1
            yield np.frombuffer(buf, np.uint8).reshape(height, width, 3)
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
        rc = proc.wait()
    if rc != 0 and _DAMAGED.search(err):
        first = next((ln.strip() for ln in err.splitlines() if _DAMAGED.search(ln)), "")
        raise InputRejected(
            "damaged",
            f"the video stream is damaged: ffmpeg decoded {n} of {probe.n_frames} frames and gave up on the rest "
            f"({first[:160]}); re-export or re-upload the file",
            details={"decoded": n, "frames": probe.n_frames, "ffmpeg_exit": rc},
        )
    if rc != 0:
        raise PipelineError(f"ffmpeg failed decoding {path} (exit {rc}): {err.strip()[-500:]}")


class Mp4Writer:
    """Write RGB frames to an H.264 mp4 through ffmpeg's stdin."""

    def __init__(self, path: str | Path, width: int, height: int, fps: float, *, crf: int = 18, preset: str = "veryfast"):
        require_ffmpeg()
        if width % 2 or height % 2:
            raise ValueError("H.264 with yuv420p needs even frame sizes")
        self.path = Path(path)
        self.size = (width, height)
        cmd = ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
               "-r", f"{fps}", "-i", "-", "-an", "-c:v", "libx264", "-preset", preset, "-crf", str(crf),
               "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(self.path)]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != (self.size[1], self.size[0], 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame must be uint8 {self.size[1]}x{self.size[0]}x3, got {frame.dtype} {frame.shape}")
        assert self._proc.stdin is not None
        self._proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        self.frames += 1

    def close(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        err = self._proc.stderr.read().decode("utf-8", "replace") if self._proc.stderr else ""
        rc = self._proc.wait()
        if rc != 0:
            raise PipelineError(f"ffmpeg failed writing {self.path} (exit {rc}): {err.strip()[-500:]}")

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._proc.kill()
            self._proc.wait()
            self.path.unlink(missing_ok=True)

"""Probe a video with ffprobe and decide whether it is an ERP video we can label.

Rejections carry a reason code and a message for the uploader (see :class:`InputRejected`):
``not_a_video``, ``still_image``, ``truncated``, ``no_frames``, ``not_equirectangular``,
``rotated`` (and, from decoding, tasks/video/frames.py and tasks/stages/decode.py: ``damaged``,
``truncated``, ``no_frames``). Every one is about the **content**, the same under any configuration (it quarantines
the content id for good); what a configuration asks of the video (``video.max_seconds``,
``video.fps``) is checked by tasks/video/limits.py as a configuration error (issue 12, point 1).

Display rotation (issue 12): phones and some 360 exporters store the picture as coded and a
display matrix (``rotate=90`` in MP4, ffprobe's side data "Display Matrix" ``rotation``) that a
player applies. ffmpeg applies it when decoding (autorotate), so every size here is the
**displayed** size, and the 2:1 check runs on it. A coded 2:1 picture whose display matrix turns
it to 1:2 is rejected with reason ``rotated`` (the fix is to drop the metadata, not to re-export);
a coded 1:2 picture displayed 2:1 is labeled upright. Angles other than multiples of 90 degrees
(and rotated stereo, whose eye layout refers to the coded picture) are ``rotated`` too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

from tasks.errors import InputRejected, PipelineError

# ERP exports are sometimes a few pixels off 2:1 (e.g. 5760x2882); accept 0.5% and normalise.
_ASPECT_TOLERANCE = 0.005
_IMAGE_FORMATS = {"image2", "png_pipe", "jpeg_pipe", "bmp_pipe", "webp_pipe", "tiff_pipe", "gif", "apng"}
# Containers whose header starts with an ftyp box: a failed probe there means a cut-off upload.
_ISO_BMFF_MAGIC = b"ftyp"


@dataclass(frozen=True)
class VideoProbe:
    width: int            # displayed frame size (after the display matrix's rotation)
    height: int
    fps: float
    n_frames: int         # packets actually present in the file
    duration: float
    codec: str
    container: str
    layout: str           # "mono" | "top-bottom" | "left-right"
    spherical: bool       # carries spherical (equirectangular) metadata
    eye_width: int        # size of the ERP picture we label (one eye for stereo)
    eye_height: int
    # display rotation in degrees (0, 90, 180, 270) that ffmpeg's autorotate applies when
    # decoding; 0 in source records written before issue 12
    rotation: int = 0

    def to_json(self) -> dict:
        return asdict(self)


def require_ffmpeg() -> None:
    for tool in ("ffmpeg", "ffprobe"):
        if shutil.which(tool) is None:
            raise PipelineError(
                f"{tool} is not on PATH: install ffmpeg (Debian: apt-get install ffmpeg); `make demo` and .ci/run do this"
            )


def _run_ffprobe(path: Path) -> tuple[dict | None, str]:
    require_ffmpeg()
    cmd = ["ffprobe", "-v", "error", "-count_packets", "-print_format", "json", "-show_format", "-show_streams", str(path)]
    proc = subprocess.run(cmd, capture_output=True, timeout=600)
    err = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0:
        return None, err
    try:
        return json.loads(proc.stdout.decode("utf-8", "replace") or "{}"), err
    except json.JSONDecodeError:
        return None, err


def _rate(s: str | None) -> float:
    try:
        r = Fraction(s) if s else Fraction(0)
    except (ValueError, ZeroDivisionError):
        return 0.0
    return float(r) if r > 0 else 0.0


def probe(path: str | Path) -> VideoProbe:
    """Probe ``path``; raise :class:`InputRejected` with a reason if its content cannot be labeled
    under any configuration."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise InputRejected("not_a_video", "the file is empty (0 bytes)")
    with open(path, "rb") as fh:
        head = fh.read(12)
    info, err = _run_ffprobe(path)
    is_bmff = head[4:8] == _ISO_BMFF_MAGIC
    if info is None:
        if is_bmff and "moov atom not found" in err:
            raise InputRejected(
                "truncated", "the MP4/MOV index (moov atom) is missing: the upload was cut off; re-upload the complete file")
        if is_bmff:
            raise InputRejected(
                "truncated",
                "the MP4/MOV file is cut off (ffprobe: " + _first_line(err) + "); re-upload the complete file",
            )
        raise InputRejected("not_a_video", "not a video file ffmpeg can read (ffprobe: " + _first_line(err) + ")")
    streams = [s for s in info.get("streams", []) if s.get("codec_type") == "video"]
    fmt = info.get("format", {})
    container = str(fmt.get("format_name", ""))
    if not streams:
        if container and container not in _IMAGE_FORMATS:
            raise InputRejected("no_frames", f"the {container.split(',')[0]} container holds no video frames "
                                             "(no video stream); the recording or export produced an empty video")
        raise InputRejected("not_a_video", f"the file has no video stream (container {container or 'unknown'})")
    v = streams[0]
    if container in _IMAGE_FORMATS or (v.get("codec_name") in ("png", "bmp", "webp") and not fmt.get("duration")):
        raise InputRejected("still_image", f"a still image ({v.get('codec_name')}), not a video; upload an ERP video")
    width, height = int(v.get("width") or 0), int(v.get("height") or 0)
    fps = _rate(v.get("avg_frame_rate")) or _rate(v.get("r_frame_rate"))
    declared = int(v.get("nb_frames") or 0)
    read = int(v.get("nb_read_packets") or 0)
    duration = float(v.get("duration") or fmt.get("duration") or 0.0)
    if "partial file" in err or (declared and read < declared):
        raise InputRejected(
            "truncated",
            f"the file is cut off: the header promises {declared} frames but only {read} are present; "
            "re-upload the complete file",
            details={"declared_frames": declared, "present_frames": read},
        )
    if read == 0 or width == 0 or height == 0:
        raise InputRejected("no_frames", "the video stream holds no frames")
    if fps <= 0:
        fps = read / duration if duration > 0 else 0.0
    if fps <= 0:
        raise InputRejected("no_frames", "cannot determine the frame rate of the video stream")
    if not duration:
        duration = read / fps
    side = {d.get("side_data_type"): d for d in v.get("side_data_list", []) or []}
    rotation = _rotation(v, side)
    if rotation in (90, 270):
        if abs(width / height - 2.0) <= 2.0 * _ASPECT_TOLERANCE:
            raise InputRejected(
                "rotated",
                f"the picture is coded {width}x{height} (2:1) but its display matrix rotates it by {rotation} "
                f"degrees, so it is shown {height}x{width}, not equirectangular; drop the rotation metadata "
                "(ffmpeg -i in.mp4 -c copy -metadata:s:v:0 rotate=0 out.mp4) and upload again",
                details={"rotation": rotation, "coded_width": width, "coded_height": height},
            )
        width, height = height, width  # what ffmpeg's autorotate hands us
    spherical = side.get("Spherical Mapping", {}).get("projection") == "equirectangular"
    stereo = side.get("Stereo 3D", {}).get("type", "2D")
    if stereo == "top and bottom":
        layout, eye_w, eye_h = "top-bottom", width, height // 2
    elif stereo == "side by side":
        layout, eye_w, eye_h = "left-right", width // 2, height
    else:
        layout, eye_w, eye_h = "mono", width, height
    if rotation and layout != "mono":
        raise InputRejected(
            "rotated",
            f"{layout} stereo video with a {rotation} degree display rotation: the eye layout refers to the "
            "unrotated picture; drop the rotation metadata (ffmpeg -i in.mp4 -c copy -metadata:s:v:0 rotate=0 out.mp4)",
            details={"rotation": rotation},
        )
    if layout == "mono":
        if abs(width / height - 2.0) > 2.0 * _ASPECT_TOLERANCE:
            hint = (
                "; a 1:1 video is read as top-bottom stereo only when it carries spherical stereo metadata"
                if width == height else ""
            )
            raise InputRejected(
                "not_equirectangular",
                f"the video is {width}x{height}, not 2:1 equirectangular (width must be 2 x height){hint}; "
                "re-export it as an ERP/equirectangular projection",
                details={"width": width, "height": height},
            )
    elif not spherical:
        raise InputRejected(
            "not_equirectangular",
            f"{layout} stereo video without equirectangular spherical metadata; only ERP projection is supported",
        )
    return VideoProbe(width, height, fps, read, duration, str(v.get("codec_name")), container, layout, spherical,
                      eye_w, eye_h, rotation)


def _rotation(stream: dict, side: dict) -> int:
    """Clockwise display rotation in degrees, normalised to 0/90/180/270.

    ffprobe reports the display matrix's angle as side data ``rotation`` (counter-clockwise
    positive since ffmpeg 5; older builds also keep a ``rotate`` tag, clockwise). Only the size
    matters here (90 and 270 swap width and height), and ffmpeg's autorotate applies either sign
    correctly when decoding."""
    raw = side.get("Display Matrix", {}).get("rotation")
    if raw is None:
        raw = (stream.get("tags") or {}).get("rotate")
    try:
        angle = float(raw) if raw is not None else 0.0
    except (TypeError, ValueError):
        return 0
    if angle != angle or abs(angle) == float("inf"):
        return 0
    norm = angle % 360.0
    nearest = round(norm / 90.0) * 90 % 360
    if abs(norm - nearest) > 0.5 and abs(norm - nearest - 360) > 0.5:
        raise InputRejected(
            "rotated",
            f"the display matrix rotates the picture by {angle:g} degrees, not a multiple of 90; ERP frames cannot "
            "be rotated that way — drop the rotation metadata (ffmpeg -i in.mp4 -c copy -metadata:s:v:0 rotate=0 out.mp4)",
            details={"rotation": angle},
        )
    return int(nearest)


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no details"

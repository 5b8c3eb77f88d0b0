"""Where everything lives in the bucket (docs/ARCHITECTURE.md, "Storage layout").

All key construction goes through these helpers so that the layout is defined once.
"""

from __future__ import annotations

import re

RAW = "raw/"
VIDEOS = "videos/"
QUARANTINE = "quarantine/"
RELEASES = "releases/"
MANIFEST = "_MANIFEST.json"

_VIDEO_ID = re.compile(r"^[0-9a-f]{16}$")
_RUN_ID = re.compile(r"^[0-9a-f]{12}$")


def check_video_id(video_id: str) -> str:
    if not isinstance(video_id, str) or not _VIDEO_ID.match(video_id):
        raise ValueError(f"invalid video id {video_id!r}: expected 16 lowercase hex digits (a content hash)")
    return video_id


def check_run_id(run: str) -> str:
    if not isinstance(run, str) or not _RUN_ID.match(run):
        raise ValueError(f"invalid run id {run!r}: expected the 12-hex-digit config hash")
    return run


def video_prefix(video_id: str) -> str:
    return f"{VIDEOS}{check_video_id(video_id)}/"


def source_key(video_id: str) -> str:
    return video_prefix(video_id) + "source.json"


def aliases_key(video_id: str) -> str:
    """Other raw keys that carried the same content (duplicate uploads)."""
    return video_prefix(video_id) + "aliases.json"


def frames_prefix(video_id: str, fps: float, width: int) -> str:
    return video_prefix(video_id) + f"frames/{fps_tag(fps)}x{width}/"


def frame_key(frames_prefix_: str, index: int) -> str:
    return f"{frames_prefix_}{index:05d}.jpg"


def prompts_key(video_id: str, sha: str) -> str:
    """A user-provided prompts document (release format), by content hash."""
    return video_prefix(video_id) + f"prompts/{sha}.json"


def run_prefix(video_id: str, run: str) -> str:
    return video_prefix(video_id) + f"runs/{check_run_id(run)}/"


def run_config_key(video_id: str, run: str) -> str:
    return run_prefix(video_id, run) + "config.json"


def stage_prefix(video_id: str, run: str, stage: str) -> str:
    return run_prefix(video_id, run) + f"{stage}/"


def manifest_key(video_id: str, run: str, stage: str) -> str:
    return stage_prefix(video_id, run, stage) + MANIFEST


def quarantine_key(video_id: str) -> str:
    return f"{QUARANTINE}{video_id}.json"


def release_prefix(version: int) -> str:
    return f"{RELEASES}v{int(version)}/"


def fps_tag(fps: float) -> str:
    """``30`` for 30.0, ``29.97`` for 29.97: a stable folder name for a frame rate."""
    return f"{fps:.3f}".rstrip("0").rstrip(".")

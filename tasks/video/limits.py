"""What a configuration asks of a video, checked against what the video is (issue 12, point 1).

:func:`tasks.video.probe.probe` judges the **content** (not a video, cut off, not 2:1 ERP):
a rejection there is permanent for that content and quarantines it under its content id. Whether
the video is longer than ``video.max_seconds``, or whether ``video.fps`` gives it any frame at
all, depends on the **configuration**: the same bytes are fine under another one. Those are
:class:`~tasks.errors.ConfigError` (exit 2) and never quarantine anything -- before issue 12 a
``--set video.max_seconds=1`` or ``--fps 1e-9`` quarantined a good (even already published)
video for good.
"""

from __future__ import annotations

from tasks.config import PipelineConfig
from tasks.errors import ConfigError
from tasks.video.probe import VideoProbe


def expected_frames(probe: VideoProbe, fps: float | None) -> int:
    """Frames decode produces: every frame once without ``fps``; duration x fps (+-1, the fps
    filter resamples by timestamps) with it."""
    return probe.n_frames if fps is None else int(round(probe.duration * fps))


def config_problems(probe: VideoProbe, config: PipelineConfig) -> list[str]:
    """Every way ``config`` asks this video for something it cannot give, each with its fix."""
    problems = []
    limit = config.video.max_seconds
    if probe.duration > limit:
        problems.append(
            f"the video is {probe.duration:.1f} s long, over video.max_seconds={limit:g}; raise the limit "
            f"(--set video.max_seconds={max(3600, int(probe.duration) + 1)}) or split the video")
    fps = config.video.fps
    # fewer than one frame over the whole duration: the fps filter may emit nothing at all
    if fps is not None and probe.duration * fps < 1.0:
        problems.append(
            f"video.fps={fps:g} gives {probe.duration * fps:.2g} frames over the video's {probe.duration:.2f} s; "
            f"ask for at least {1.0 / probe.duration:.3g} fps (the video itself runs at {probe.fps:g} fps), "
            "or leave video.fps unset to label every frame")
    return problems


def check_limits(probe: VideoProbe, config: PipelineConfig) -> None:
    """Raise :class:`ConfigError` (exit 2; nothing quarantined) listing every problem of
    :func:`config_problems`."""
    problems = config_problems(probe, config)
    if problems:
        raise ConfigError(
            f"this configuration ({config.hash}) cannot label this video; nothing was quarantined or labeled:\n"
            + "\n".join(f"  - {p}" for p in problems))

"""Typed errors of the labeling engine.

Two families matter to the orchestrator:

* :class:`PermanentError` — retrying cannot help (bad input, bad config, failed quality gate).
  Airflow maps these to a failure *without* retries; bad inputs are quarantined first.
* everything else (including :class:`TransientError`) — may succeed on retry (I/O, network).

Every message is written for the person who has to act on it: what was wrong, with which
object, and what to do about it.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class of every error this package raises on purpose."""


class PermanentError(PipelineError):
    """An error a retry cannot fix."""


class TransientError(PipelineError):
    """An error that may go away on retry (storage or network hiccup)."""


class ConfigError(PermanentError):
    """The configuration is invalid (unknown key, value out of range, unreadable file)."""


class InputRejected(PermanentError):
    """A video was rejected at the stage boundary and must be quarantined.

    ``reason`` is a short machine-readable code (``not_a_video``, ``truncated``,
    ``no_frames``, ``not_equirectangular``, ...); the message says it in words.
    """

    def __init__(self, reason: str, message: str, *, details: dict | None = None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.details = dict(details or {})


class NotEquirectangular(InputRejected):
    """A frame or video is not a 2:1 equirectangular image; no geometry function accepts it."""

    def __init__(self, width: int, height: int, what: str = "frame"):
        super().__init__(
            "not_equirectangular",
            f"{what} is {width}x{height}, not 2:1 equirectangular (width must be exactly 2 x height); "
            "re-export it as an ERP/equirectangular projection, or as top-bottom stereo with spherical metadata",
            details={"width": width, "height": height},
        )


class InvalidGeometry(PermanentError, ValueError):
    """A view, rotation or cubemap argument cannot describe a valid geometry (a field of view of
    180 degrees or more, a latitude beyond a pole, a matrix that is not a rotation, faces of
    different sizes, ...). Retrying with the same arguments cannot help."""


class DuplicateVideo(PermanentError):
    """The uploaded content was already ingested under another object key."""

    def __init__(self, video_id: str, key: str, first_key: str):
        super().__init__(
            f"{key!r} has the same content as {first_key!r} (video {video_id}); it is recorded as an alias "
            "and not labeled twice"
        )
        self.video_id = video_id
        self.key = key
        self.first_key = first_key


class MissingUpstream(PermanentError):
    """A stage was asked to run before the stage it depends on committed its output."""


class StoreError(TransientError):
    """The object store failed in a way that may be temporary."""


class ObjectNotFound(PipelineError, KeyError):
    """A key that should exist in the object store does not."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "object not found"


class PromptError(PermanentError):
    """A ``--prompts`` file is inconsistent with the video (size, frame index, empty mask, ...)."""


class QualityGateFailed(PermanentError):
    """A Great Expectations suite failed; nothing was published."""

    def __init__(self, message: str, failures: list[dict] | None = None):
        super().__init__(message)
        self.failures = list(failures or [])

"""Typed errors of the labeling engine, each carrying its own outcome.

Every error class says what it means for whoever runs the stage, in two class attributes that
the CLI (its exit code), the pod exit-code mapping of kubernetes mode and the Airflow task
wrapper all read from here, so the three can never disagree (issue 11: they were mapped in four
places):

* ``exit_code`` -- the exit status of ``python -m tasks`` (:data:`EXIT_CODES` lists them all);
* ``retryable`` -- whether a retry can help. :class:`PermanentError` and its subclasses (bad
  input, bad config, failed quality gate) are not: Airflow fails them at once, bad inputs are
  quarantined first. Everything else (:class:`TransientError`: I/O, network) is retried.

:func:`exit_outcome` turns an exit code (a pod's, say) back into its outcome.

Every message is written for the person who has to act on it: what was wrong, with which
object, and what to do about it.
"""

from __future__ import annotations

from dataclasses import dataclass

# Exit codes of `python -m tasks` (the README's table). A pod's exit code is all Airflow learns
# of a stage in kubernetes mode, so every permanent error class has one.
EXIT_OK = 0
EXIT_ERROR = 1       # unexpected or transient error: a retry may help
EXIT_USAGE = 2       # bad usage or configuration
EXIT_REJECTED = 3    # input rejected (quarantined)
EXIT_DUPLICATE = 4   # duplicate upload (skipped)
EXIT_GATE = 5        # quality gate failed
EXIT_UPSTREAM = 6    # a stage ran before its upstream
EXIT_PERMANENT = 7   # any other permanent error


@dataclass(frozen=True)
class ExitOutcome:
    """What an exit code means for the orchestrator.

    ``outcome``: ``"ok"``, ``"skip"`` (deliberately not done, e.g. a duplicate), ``"fail"``
    (fail at once, no retry) or ``"retry"``.
    """

    code: int
    outcome: str
    description: str

    @property
    def retryable(self) -> bool:
        return self.outcome == "retry"


EXIT_CODES: dict[int, ExitOutcome] = {o.code: o for o in (
    ExitOutcome(EXIT_OK, "ok", "done"),
    ExitOutcome(EXIT_ERROR, "retry", "an unexpected or transient error (a retry may help)"),
    ExitOutcome(EXIT_USAGE, "fail", "bad usage or configuration"),
    ExitOutcome(EXIT_REJECTED, "fail", "input rejected (the video is quarantined with its reason)"),
    ExitOutcome(EXIT_DUPLICATE, "skip", "duplicate upload (recorded as an alias, not labeled twice)"),
    ExitOutcome(EXIT_GATE, "fail", "quality gate failed"),
    ExitOutcome(EXIT_UPSTREAM, "fail", "an upstream stage has no committed output"),
    ExitOutcome(EXIT_PERMANENT, "fail", "a permanent error (bad input or request; retrying cannot help)"),
)}


def exit_outcome(code: int | None) -> ExitOutcome:
    """The outcome of an exit code. Codes the CLI never returns by itself (137 = OOM-killed,
    143 = SIGTERM, ``None`` = the container has no status, e.g. its node was lost) are
    retried: they say nothing about the input."""
    if code in EXIT_CODES:
        return EXIT_CODES[code]
    return ExitOutcome(-1 if code is None else int(code), "retry",
                       "killed or lost (no exit status)" if code is None else f"killed or crashed (exit code {code})")


class PipelineError(Exception):
    """Base class of every error this package raises on purpose."""

    exit_code: int = EXIT_ERROR
    retryable: bool = True
    #: how the CLI's one-line message starts
    label: str = "error"


class PermanentError(PipelineError):
    """An error a retry cannot fix."""

    exit_code = EXIT_PERMANENT
    retryable = False


class TransientError(PipelineError):
    """An error that may go away on retry (storage or network hiccup)."""

    exit_code = EXIT_ERROR
    retryable = True


class ConfigError(PermanentError):
    """The configuration is invalid (unknown key, value out of range, unreadable file)."""

    exit_code = EXIT_USAGE
    label = "configuration error"


class RequestInvalid(ConfigError):
    """A run request (DAG-run params, deployment settings) cannot be carried out as given.

    ``problems`` lists every problem found, each with what to do, so one failed attempt tells the
    operator everything to fix -- not the first problem per retry.
    """

    label = "invalid request"

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        n = len(self.problems)
        super().__init__(f"{n} problem{'s' if n != 1 else ''} with this run's request; nothing was labeled:\n"
                         + "\n".join(f"  - {p}" for p in self.problems))


class InputRejected(PermanentError):
    """A video was rejected at the stage boundary and must be quarantined.

    ``reason`` is a short machine-readable code (``not_a_video``, ``truncated``,
    ``no_frames``, ``not_equirectangular``, ...); the message says it in words.
    """

    exit_code = EXIT_REJECTED

    def __init__(self, reason: str, message: str, *, details: dict | None = None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.details = dict(details or {})

    @property
    def label(self) -> str:  # type: ignore[override]
        return f"rejected ({self.reason})"


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

    exit_code = EXIT_DUPLICATE
    label = "duplicate"

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

    exit_code = EXIT_UPSTREAM
    label = "not ready"


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

    exit_code = EXIT_GATE
    label = "quality gate failed"

    def __init__(self, message: str, failures: list[dict] | None = None):
        super().__init__(message)
        self.failures = list(failures or [])

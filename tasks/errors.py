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


class DeviceUnavailable(ConfigError):
    """The configured device (``propose.device``, ``propagate.sam2_device``) does not exist on
    this machine: a pod that asked for a GPU got none, or ``cuda:N`` names a card it lacks. Exit 2,
    not retried: a scheduling or configuration problem that a retry on the same pod does not fix
    [issue 13, bad input]. One class for every learned backend (``tasks.backends.torch_runtime``,
    ``tasks.backends.sam2_propagator``), so a caller catches one thing."""

    label = "device unavailable"


class UsageError(PermanentError):
    """A command-line argument cannot work (an output folder that cannot be written, a path that
    is a file where a folder is needed, a number out of range). Found before any work is done
    wherever it can be checked up front (issue 12: a read-only ``--out`` surfaced after the
    whole run)."""

    exit_code = EXIT_USAGE
    label = "usage error"


class InvalidKey(PermanentError, ValueError):
    """An object key that could escape the store or alias another key (``raw/../../x.mp4``, a
    backslash, an empty segment). Also a :class:`ValueError`, as it was before it was typed
    (issue 12: it printed a traceback and exit 1, "retry may help"). Exit 2: a key is always
    something a person or a request gave."""

    exit_code = EXIT_USAGE
    label = "invalid key"


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

    label = "prompts refused"


class QualityGateFailed(PermanentError):
    """A Great Expectations suite failed; nothing was published."""

    exit_code = EXIT_GATE
    label = "quality gate failed"

    def __init__(self, message: str, failures: list[dict] | None = None):
        super().__init__(message)
        self.failures = list(failures or [])


class SourceChanged(PermanentError):
    """The raw object under a video's key no longer has the content its ``source.json`` records
    (issue 12: a re-upload under the same key must not give another video's frames under the old
    id). The new bytes are a new video: ingest them, which gives them their own content id."""

    label = "source changed"

    def __init__(self, video_id: str, key: str, recorded: str, found: str):
        super().__init__(
            f"the object {key!r} no longer holds video {video_id}: its sha256 is {found[:16]}…, "
            f"source.json records {recorded[:16]}…; nothing was decoded. The new content is a new video: "
            f"run `python -m tasks ingest --key {key}` (it gets its own id); to label video {video_id} "
            "again, upload its original file"
        )
        self.video_id = video_id
        self.key = key
        self.recorded = recorded
        self.found = found


class LeaseHeld(TransientError):
    """Another process holds the lease on what this one was about to write (a stage of the same
    video and run, issue 12), and did not let go within the wait. Retrying later helps: by then
    the holder has committed (the retry skips) or its lease has expired (the retry takes over)."""

    label = "busy"

    def __init__(self, what: str, holder: dict, expires_in: float, waited: float):
        who = describe_holder(holder)
        super().__init__(
            f"{what} is being written by {who}; waited {waited:.0f} s, its lease runs {max(expires_in, 0):.0f} s more. "
            "Nothing was written; run again when it is done (a committed stage is skipped), or stop that "
            "process: its lease then expires and the next run takes over"
        )
        self.holder = dict(holder)


class LeaseLost(TransientError):
    """This process's lease expired or was taken over before it committed; nothing was committed."""

    label = "lease lost"


def describe_holder(holder: dict) -> str:
    """'host h1, pid 42 (Airflow dag d, run r, task t, try 2)' from a lease's holder record."""
    text = f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}"
    airflow = [f"{k} {holder[k]}" for k in ("dag", "run", "task", "try") if holder.get(k)]
    return text + (f" (Airflow {', '.join(airflow)})" if airflow else "")


class CorrectionRejected(PermanentError):
    """A corrections file (``review import``) cannot be applied as given (issue 15): another video,
    other sizes, frames out of range, labels outside the vocabulary, overlapping masks,
    interpolated or polygon shapes, a track that changes class. ``problems`` lists every one, each
    with what to fix; nothing is stored."""

    exit_code = EXIT_USAGE
    label = "corrections rejected"

    def __init__(self, problems: list[str], where: str = "corrections"):
        self.problems = list(problems)
        n = len(self.problems)
        super().__init__(f"{where}: {n} problem{'s' if n != 1 else ''}; nothing was imported:\n"
                         + "\n".join(f"  - {p}" for p in self.problems))


# -- the model store (issue 13 §3; tasks/models/) ---------------------------------------------------
# A missing model is a deployment/configuration problem (exit 2: import it, or point the config at
# one that exists); a corrupt one is permanent for this input (exit 7: re-import it). Neither is
# retried: a retry reads the same bytes. Messages name the model, the file and the command to run,
# and never the expected sha256 (issue 12 §9): a checksum in an error message gets pasted into a
# configuration to "fix" it, which accepts the wrong file.

class ModelMissing(ConfigError):
    """The model is neither in the store nor in the mounted models folder (exit 2)."""

    label = "model missing"

    def __init__(self, name: str, where: str):
        super().__init__(
            f"model {name!r} is not available ({where}). Import it once from a folder holding its files "
            f"(e.g. a Hugging Face snapshot downloaded on a machine with internet access): "
            f"`python -m tasks models import DIR --name {name}`; `python -m tasks models list` shows what is there"
        )
        self.name = name


class ModelCorrupt(PermanentError):
    """A file of the model does not match its manifest (content, size, or missing) (exit 7)."""

    label = "model corrupt"

    def __init__(self, name: str, problems: list[str], where: str):
        self.name = name
        self.problems = list(problems)
        listed = "; ".join(self.problems[:5]) + (f"; and {len(self.problems) - 5} more" if len(self.problems) > 5 else "")
        super().__init__(
            f"model {name!r} in {where} does not match its manifest: {listed}. It is not loaded while it does not match. "
            f"Re-import it from a good copy: `python -m tasks models import DIR --name {name}`, then "
            f"`python -m tasks models verify {name}`"
        )


class ModelMismatch(ConfigError):
    """The model exists but is not what the caller loads (another architecture or loader class),
    or a folder being imported contradicts the ``--loader`` it was given (exit 2)."""

    label = "wrong model"


class ModelImportError(ConfigError):
    """``models import`` cannot import the folder as given (empty, unreadable, bad name) (exit 2)."""

    label = "cannot import model"

"""Typed errors of the model store, on the outcomes of :mod:`tasks.errors`.

A missing model is a deployment/configuration problem (exit 2: import it, or point the config at
one that exists); a corrupt one is permanent for this input (exit 7: re-import it). Neither is
retried: a retry reads the same bytes. Messages name the model, the file and the command to run,
and never the expected sha256 (issue 12 §9): a checksum in an error message gets pasted into a
configuration to "fix" it, which accepts the wrong file.
"""

from __future__ import annotations

from tasks.errors import EXIT_PERMANENT, ConfigError, PermanentError


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

    exit_code = EXIT_PERMANENT
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

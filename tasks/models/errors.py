"""Typed errors of the model store; defined in :mod:`tasks.errors` with every other outcome."""

from tasks.errors import ModelCorrupt, ModelImportError, ModelMismatch, ModelMissing

__all__ = ["ModelCorrupt", "ModelImportError", "ModelMismatch", "ModelMissing"]

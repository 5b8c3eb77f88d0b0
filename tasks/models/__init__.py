"""The model store (issue 13 §3): weights under ``models/{name}/`` in the object store with a
manifest (files, sha256, size, source, license, loader class), imported once from a folder a
user downloaded (``python -m tasks models import DIR --name NAME``), and resolved by every backend
through :func:`model_path`: a verified local folder, from a mounted copy or the store via a local
cache; never from a hub (:func:`enforce_offline`).
"""

from tasks.models.errors import ModelCorrupt, ModelImportError, ModelMismatch, ModelMissing
from tasks.models.manifest import SAM2_LOADER, FileEntry, Manifest
from tasks.models.offline import enforce_offline
from tasks.models.resolve import ResolvedModel, check_loader, default_cache_dir, model_path, resolve_model
from tasks.models.store import import_model, list_models, read_manifest, verify_model

__all__ = [
    "SAM2_LOADER", "FileEntry", "Manifest", "ModelCorrupt", "ModelImportError", "ModelMismatch", "ModelMissing", "ResolvedModel",
    "check_loader", "default_cache_dir", "enforce_offline", "import_model", "list_models", "model_path",
    "read_manifest", "resolve_model", "verify_model",
]

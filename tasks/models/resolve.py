"""Where a stage finds a model's files: :func:`model_path`.

Two sources, tried in this order:

1. a **mounted** copy of the store's ``models/`` folder (``$LEADER360V_MODELS_DIR``, e.g. a
   read-only volume synced from the bucket): ``{dir}/{name}/manifest.json`` and
   ``{dir}/{name}/{version}/...``. Every file is hashed against the manifest once per process.
2. the **object store** (``models/{name}/``): the files are downloaded once into a local cache
   (``cache_dir``, else ``$LEADER360V_MODEL_CACHE``, else ``~/.cache/leader360v/models``) under
   ``{cache}/{name}/{version}/``, hashed while they arrive, and the folder appears there (an atomic
   rename) only when every file matched. A later call re-uses it when the files still have the
   size and modification time they had when verified; a file that changed since is hashed again
   and, if it no longer matches, the cached copy is discarded and fetched anew.

Nothing is ever fetched from a model hub (:mod:`tasks.models.offline`).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from tasks.errors import ObjectNotFound
from tasks.models.errors import ModelCorrupt, ModelMismatch, ModelMissing
from tasks.models.manifest import MANIFEST, Manifest, check_name, file_sha256
from tasks.models.store import file_key, manifest_key, read_manifest

MODELS_DIR_ENV = "LEADER360V_MODELS_DIR"
CACHE_ENV = "LEADER360V_MODEL_CACHE"
# In a resolved folder: the manifest it was verified against, and the (size, mtime) of each file
# when it was (hidden names: from_pretrained and friends ignore them; a model file cannot clash).
CACHED_MANIFEST = ".l360-manifest.json"
VERIFIED = ".l360-verified.json"

_LOCK = threading.Lock()
_MOUNT_VERIFIED: dict[tuple[str, str], dict] = {}   # (folder, version) -> stats when hashed


@dataclass(frozen=True)
class ResolvedModel:
    path: Path            # the folder holding the model's files, verified
    manifest: Manifest
    origin: str           # "mounted" or "store"


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "leader360v" / "models"


def model_path(name: str, *, store=None, cache_dir: str | Path | None = None, loader: str | None = None) -> Path:
    """The local folder holding the verified files of model ``name`` (see the module doc).

    ``loader``: the class the caller will load it with (``transformers.OneFormerForUniversalSegmentation``);
    a model imported for another class is refused with :class:`ModelMismatch` (exit 2).
    Missing model: :class:`ModelMissing` (exit 2) naming the ``models import`` to run; a file that
    does not match the manifest: :class:`ModelCorrupt` (exit 7) naming the file."""
    return resolve_model(name, store=store, cache_dir=cache_dir, loader=loader).path


def resolve_model(name: str, *, store=None, cache_dir: str | Path | None = None,
                  loader: str | None = None) -> ResolvedModel:
    """:func:`model_path` with the manifest and where the files came from."""
    check_name(name)
    mounted = os.environ.get(MODELS_DIR_ENV)
    if mounted and (Path(mounted).expanduser() / name / MANIFEST).is_file():
        res = _mounted(Path(mounted).expanduser(), name)
    else:
        if store is None:
            from tasks.storage import store_from_env

            store = store_from_env()
        m = read_manifest(store, name)
        if m is None:
            where = f"no {manifest_key(name)} in the store {store.uri()}"
            if mounted:
                where += f", no {name}/{MANIFEST} under ${MODELS_DIR_ENV}={mounted}"
            raise ModelMissing(name, where)
        res = ResolvedModel(_cached(store, m, Path(cache_dir) if cache_dir else default_cache_dir()), m, "store")
    if loader is not None:
        check_loader(res.manifest, loader)
    return res


def check_loader(m: Manifest, loader: str) -> None:
    """The model must have been imported for ``loader`` (class names compared, so
    ``OneFormerForUniversalSegmentation`` and ``transformers.OneFormerForUniversalSegmentation`` agree)."""
    want, have = loader.rsplit(".", 1)[-1], m.loader.rsplit(".", 1)[-1]
    if want != have:
        raise ModelMismatch(
            f"model {m.name!r} was imported for {m.loader} (architecture {m.architecture or 'unknown'}), but this "
            f"backend loads it with {loader}: the configuration names the wrong model, or the wrong folder was "
            f"imported under {m.name!r}; fix the model name in the configuration or re-import the right folder "
            f"with `python -m tasks models import DIR --name {m.name}`")


# -- mounted folder ---------------------------------------------------------------------------------
def _mounted(root: Path, name: str) -> ResolvedModel:
    mpath = root / name / MANIFEST
    try:
        data = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelMismatch(f"{mpath} cannot be read as a manifest ({exc}); re-sync the models folder") from exc
    m = Manifest.from_json(data, str(mpath))
    if m.name != name:
        raise ModelMismatch(f"{mpath} describes model {m.name!r}, not {name!r}; re-sync the models folder")
    folder = root / name / m.version
    with _LOCK:
        key = (str(folder), m.version)
        if _stats(folder, m) != _MOUNT_VERIFIED.get(key):
            problems = _check_files(folder, m)
            if problems:
                raise ModelCorrupt(name, problems, f"the mounted folder {root / name}")
            _MOUNT_VERIFIED[key] = _stats(folder, m)
    return ResolvedModel(folder, m, "mounted")


# -- object store + local cache ---------------------------------------------------------------------
def _cached(store, m: Manifest, cache_root: Path) -> Path:
    target = cache_root / m.name / m.version
    with _LOCK:
        if target.is_dir() and _cache_valid(target, m):
            return target
        if target.exists():   # a cached copy that no longer matches: fetch it again
            shutil.rmtree(target, ignore_errors=True)
        tmp = cache_root / m.name / f".tmp-{uuid.uuid4().hex[:12]}"
        tmp.mkdir(parents=True, exist_ok=True)
        try:
            problems = []
            for f in m.files:
                dest = tmp / f.path
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    store.get_file(file_key(m, f.path), dest)
                except ObjectNotFound:
                    problems.append(f"{f.path} is missing")
                    continue
                if dest.stat().st_size != f.size:
                    problems.append(f"{f.path} has {dest.stat().st_size} bytes, the manifest {f.size}")
                elif file_sha256(dest) != f.sha256:
                    problems.append(f"{f.path} has other content than was imported (sha256 differs)")
            if problems:
                raise ModelCorrupt(m.name, problems, f"the store {store.uri(f'models/{m.name}/')}")
            (tmp / CACHED_MANIFEST).write_text(json.dumps(m.to_json(), indent=1), encoding="utf-8")
            (tmp / VERIFIED).write_text(json.dumps(_stats(tmp, m)), encoding="utf-8")
            try:
                os.rename(tmp, target)
            except OSError:           # another process put the same version there first
                if not (target.is_dir() and _cache_valid(target, m)):
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        for old in (cache_root / m.name).iterdir():   # earlier versions of this model
            if old.name != m.version and not old.name.startswith(".tmp-"):
                shutil.rmtree(old, ignore_errors=True)
    return target


def _cache_valid(folder: Path, m: Manifest) -> bool:
    """True when ``folder`` holds ``m``'s files as verified; files whose size or mtime changed
    since are hashed again (and the record updated when they still match)."""
    try:
        recorded = json.loads((folder / VERIFIED).read_text(encoding="utf-8"))
        cached = Manifest.from_json(json.loads((folder / CACHED_MANIFEST).read_text(encoding="utf-8")), str(folder))
    except (OSError, ValueError, ModelMismatch):
        return False
    if cached.version != m.version:
        return False
    now = _stats(folder, m)
    if now == recorded:
        return True
    if _check_files(folder, m):
        return False
    (folder / VERIFIED).write_text(json.dumps(now), encoding="utf-8")
    return True


def _stats(folder: Path, m: Manifest) -> dict:
    out = {}
    for f in m.files:
        try:
            st = (folder / f.path).stat()
            out[f.path] = [st.st_size, st.st_mtime_ns]
        except OSError:
            out[f.path] = None
    return out


def _check_files(folder: Path, m: Manifest) -> list[str]:
    problems = []
    for f in m.files:
        p = folder / f.path
        if not p.is_file():
            problems.append(f"{f.path} is missing")
        elif p.stat().st_size != f.size:
            problems.append(f"{f.path} has {p.stat().st_size} bytes, the manifest {f.size}")
        elif file_sha256(p) != f.sha256:
            problems.append(f"{f.path} has other content than was imported (sha256 differs)")
    return problems

"""Models in the object store: import a folder, list, verify (``python -m tasks models ...``).

See :mod:`tasks.models.manifest` for the layout. Import order is what makes it atomic: every file
goes to ``models/{name}/{version}/`` first, the manifest last (a reader that finds no manifest
finds no model; one that finds the old manifest reads the old version's files, which are only
deleted after the new manifest is in place).
"""

from __future__ import annotations

import getpass
import logging
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

from tasks.errors import ObjectNotFound
from tasks.models.errors import ModelCorrupt, ModelImportError, ModelMismatch, ModelMissing
from tasks.models.manifest import (
    MANIFEST,
    FileEntry,
    Manifest,
    check_loader_fits,
    check_name,
    describe_folder,
    file_sha256,
    scan_folder,
)
from tasks.storage.lease import LEASES, held_lease, lease_wait_s

log = logging.getLogger(__name__)

PREFIX = "models/"


# An import copies the whole model (about 900 MB for SAM 2.1 Hiera-L or a OneFormer Swin-L, minutes
# to a remote S3): a second import of the same name waits this many times the lease wait
# ($LEADER360V_LEASE_WAIT_S, default 60 s) for it before it fails with exit 1 (LeaseHeld).
_IMPORT_WAIT_FACTOR = 10


def import_lease_key(name: str) -> str:
    """One lease per model name, outside ``models/`` so no listing or version cleanup sees it."""
    return f"{LEASES}models/{name}.json"


def manifest_key(name: str) -> str:
    return f"{PREFIX}{name}/{MANIFEST}"


def file_key(m: Manifest, path: str) -> str:
    return f"{PREFIX}{m.name}/{m.version}/{path}"


def read_manifest(store, name: str) -> Manifest | None:
    """The model's manifest in ``store``; None when it has none (never imported, or an import
    that did not finish)."""
    check_name(name)
    try:
        data = store.get_json(manifest_key(name))
    except ObjectNotFound:
        return None
    except ValueError as exc:
        raise ModelMismatch(f"{store.uri(manifest_key(name))} is not valid JSON ({exc}); re-import model {name!r}") from exc
    m = Manifest.from_json(data, store.uri(manifest_key(name)))
    if m.name != name:
        raise ModelMismatch(f"{store.uri(manifest_key(name))} describes model {m.name!r}, not {name!r}: "
                            f"it was copied by hand; re-import it with `python -m tasks models import DIR --name {name}`")
    return m


def require_manifest(store, name: str) -> Manifest:
    m = read_manifest(store, name)
    if m is None:
        raise ModelMissing(name, f"no {manifest_key(name)} in the store {store.uri()}")
    return m


def import_model(store, folder: str | Path, name: str, *, source: str | None = None, license: str | None = None,
                 loader: str | None = None) -> Manifest:
    """Copy ``folder`` into the store as model ``name`` and return its manifest (written last).

    ``loader`` defaults to the class named by the folder's ``config.json`` (``save_pretrained``
    output) or SAM2's builder for a released ``sam2*.pt``; a ``loader`` that contradicts
    ``config.json`` is refused before anything is written."""
    check_name(name)
    folder = Path(folder).expanduser()
    files = scan_folder(folder)
    architecture, default_loader = describe_folder(folder)
    loader = loader or default_loader
    if not loader:
        raise ModelImportError(f"cannot tell which class loads {folder} (no config.json, no sam2*.pt): pass "
                               "--loader, e.g. --loader transformers.OneFormerForUniversalSegmentation")
    check_loader_fits(architecture, loader, str(folder))
    t0 = time.perf_counter()
    entries = []
    for rel, path in files:
        try:
            entries.append(FileEntry(path=rel, sha256=file_sha256(path), size=path.stat().st_size))
        except OSError as exc:
            raise ModelImportError(f"cannot read {path}: {exc.strerror}") from exc
    m = Manifest(name=name, files=entries, loader=loader, architecture=architecture, source=source,
                 license=license, imported_by=_who(),
                 imported_at=datetime.now(UTC).isoformat(timespec="seconds"))
    # Two imports of one name at once would delete each other's new files: the first to finish
    # drops every other version's prefix, including the one the second is still copying, whose
    # manifest then names deleted files. One import per name at a time, under a lease; the second
    # waits for the first (then replaces it) -- hashing above is done outside it, so the wait is the
    # copy only.
    with held_lease(store, import_lease_key(name), what=f"importing model {name!r}",
                    wait_s=lease_wait_s() * _IMPORT_WAIT_FACTOR) as lease:
        for (rel, path), entry in zip(files, m.files, strict=True):
            store.put_file(file_key(m, rel), path)
            if store.stat(file_key(m, rel)).size != entry.size:   # the file changed while it was copied
                raise ModelImportError(f"{path} changed while it was imported; import it again when nothing writes it")
        lease.check()  # an import that lost its lease must not switch the manifest over the new holder's
        store.put_json(manifest_key(name), m.to_json())
        _drop_other_versions(store, m)
    log.info("imported model %s (%d files, %.1f MB) in %.1f s", name, len(m.files), m.total_size / 1e6,
             time.perf_counter() - t0)
    return m


def _drop_other_versions(store, m: Manifest) -> None:
    """Delete the files of earlier versions and of interrupted imports of this model."""
    for prefix in store.list_prefixes(f"{PREFIX}{m.name}/"):
        if prefix.rstrip("/").rsplit("/", 1)[-1] != m.version:
            store.delete_prefix(prefix)


def list_models(store) -> list[Manifest]:
    out = []
    for prefix in store.list_prefixes(PREFIX):
        name = prefix.rstrip("/").rsplit("/", 1)[-1]
        try:
            check_name(name)
        except ModelImportError:
            continue
        m = read_manifest(store, name)
        if m is not None:
            out.append(m)
    return sorted(out, key=lambda m: m.name)


def verify_model(store, name: str) -> Manifest:
    """Read every file of the model back from the store and compare it with the manifest;
    :class:`ModelCorrupt` (exit 7) lists each file that is missing, of another size or content."""
    m = require_manifest(store, name)
    problems = []
    for f in m.files:
        key = file_key(m, f.path)
        try:
            size = store.stat(key).size
        except ObjectNotFound:
            problems.append(f"{f.path} is missing")
            continue
        if size != f.size:
            problems.append(f"{f.path} has {size} bytes, the manifest {f.size}")
            continue
        with store.local_file(key) as p:
            if file_sha256(p) != f.sha256:
                problems.append(f"{f.path} has other content than was imported (sha256 differs)")
    if problems:
        raise ModelCorrupt(name, problems, f"the store {store.uri()}")
    return m


def _who() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in a container: the host name still says where
        user = "?"
    return f"{user}@{socket.gethostname()}"

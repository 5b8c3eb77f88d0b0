"""The manifest of one model: which files, their sha256 and size, where they came from, under
which license, and the library class that loads them.

It is the one record a stage trusts: a file is loaded only after its sha256 matched the
manifest's, and a loader only takes a model whose manifest names its class (a Cityscapes
OneFormer folder imported under a Mask2Former voter's name fails with a message, not with a
half-loaded model).

Layout in the object store (and in a mounted copy of the store's ``models/`` folder)::

    models/{name}/manifest.json           written last by `models import`: the model exists
    models/{name}/{version}/{file path}   the files, ``version`` = 16 hex of the file list's hash

A new import of changed files goes to a new ``{version}/`` prefix and switches the manifest at
the end, so an interrupted import is invisible and a reader never sees half of two versions.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tasks.models.errors import ModelImportError, ModelMismatch

MANIFEST = "manifest.json"
# The class a SAM2 checkpoint (``{"model": state_dict}``) is loaded into: the video predictor of the
# propagator and the image model of the entity proposer are both SAM2Base (one model, two roles).
SAM2_LOADER = "sam2.modeling.sam2_base.SAM2Base"
FORMAT = 1
# Names become object-store prefixes, folder names and CLI arguments: letters, digits, '.', '_',
# '-', starting with a letter or digit, at most 100 characters.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name) or ".." in name:
        raise ModelImportError(f"model name {name!r} is not valid: use letters, digits, '.', '_' or '-' "
                               "(at most 100, starting with a letter or digit), e.g. sam2.1-hiera-large")
    return name


@dataclass(frozen=True)
class FileEntry:
    path: str      # POSIX path inside the model folder
    sha256: str
    size: int


@dataclass
class Manifest:
    name: str
    files: list[FileEntry]
    loader: str                    # the class that loads it, e.g. transformers.OneFormerForUniversalSegmentation
    architecture: str | None = None    # config.json "architectures"[0] / "model_type" when there is one
    source: str | None = None      # where the files came from (URL), as the importer said
    license: str | None = None
    imported_by: str | None = None
    imported_at: str | None = None     # ISO 8601 UTC
    format: int = FORMAT
    version: str = field(default="")

    def __post_init__(self) -> None:
        self.files = sorted((f if isinstance(f, FileEntry) else FileEntry(**f) for f in self.files),
                            key=lambda f: f.path)
        if not self.version:
            self.version = files_version(self.files)

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def file(self, path: str) -> FileEntry:
        for f in self.files:
            if f.path == path:
                return f
        raise KeyError(path)

    def to_json(self) -> dict:
        d = asdict(self)
        d["total_size"] = self.total_size
        return d

    @classmethod
    def from_json(cls, data: dict, where: str) -> Manifest:
        try:
            if int(data.get("format", 0)) != FORMAT:
                raise ValueError(f"format {data.get('format')!r}, this version reads format {FORMAT}")
            files = [FileEntry(path=str(f["path"]), sha256=str(f["sha256"]).lower(), size=int(f["size"]))
                     for f in data["files"]]
            for f in files:
                _check_rel(f.path)
                if not re.fullmatch(r"[0-9a-f]{64}", f.sha256):
                    raise ValueError(f"file {f.path!r} has no valid sha256")
            m = cls(name=str(data["name"]), files=files, loader=str(data["loader"]),
                    architecture=data.get("architecture"), source=data.get("source"), license=data.get("license"),
                    imported_by=data.get("imported_by"), imported_at=data.get("imported_at"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelMismatch(f"the manifest {where} is not a model manifest this version can read ({exc}); "
                                "re-import the model with `python -m tasks models import`") from exc
        if data.get("version") and data["version"] != m.version:
            raise ModelMismatch(f"the manifest {where} names version {data['version']!r} but its file list "
                                f"hashes to {m.version!r}: it was edited by hand; re-import the model")
        return m


def files_version(files: list[FileEntry]) -> str:
    """16 hex digits naming this exact set of files (paths, contents, sizes)."""
    canon = json.dumps([[f.path, f.sha256, f.size] for f in sorted(files, key=lambda f: f.path)],
                       separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _check_rel(path: str) -> str:
    parts = path.split("/")
    if not path or path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"file path {path!r} is not a relative POSIX path inside the model folder")
    return path


def scan_folder(folder: Path) -> list[tuple[str, Path]]:
    """(relative POSIX path, real file) for every file of a folder to import, sorted. Hidden
    entries (``.cache/`` of ``huggingface-cli download --local-dir``, ``.git``, ``.DS_Store``) and
    a manifest already there are left out; symbolic links are followed (a Hugging Face cache
    snapshot is made of links into ``blobs/``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelImportError(f"{folder} is not a folder; give the folder holding the model's files "
                               "(e.g. the snapshot folder of a Hugging Face download)")
    out = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for fn in sorted(files):
            if fn.startswith(".") or (fn == MANIFEST and Path(root) == folder):
                continue
            p = Path(root) / fn
            rel = p.relative_to(folder).as_posix()
            if not p.is_file():
                raise ModelImportError(f"{p} is a broken link or not a regular file; fix or remove it before importing")
            out.append((rel, p))
    if not out:
        raise ModelImportError(f"{folder} holds no files to import")
    return sorted(out)


def describe_folder(folder: Path) -> tuple[str | None, str | None]:
    """(architecture, default loader) from a folder's ``config.json`` (what ``save_pretrained``
    writes): ``architectures[0]`` names the transformers class; else SAM2's released ``*.pt``."""
    cfg = Path(folder) / "config.json"
    if cfg.is_file():
        try:
            data = json.loads(cfg.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelImportError(f"{cfg} is not readable JSON ({exc}); is the download complete?") from exc
        archs = data.get("architectures") or []
        arch = archs[0] if archs and isinstance(archs[0], str) else None
        return arch or data.get("model_type"), (f"transformers.{arch}" if arch else None)
    pts = sorted(p.name for p in Path(folder).glob("*.pt"))
    if len(pts) == 1 and pts[0].startswith("sam2"):
        return pts[0].removesuffix(".pt"), SAM2_LOADER
    return None, None


def check_loader_fits(architecture: str | None, loader: str, where: str) -> None:
    """A transformers loader must name the class its ``config.json`` was saved from."""
    # an architecture from "architectures" is a class name (capitalised); "model_type" is not
    if loader.startswith("transformers.") and architecture and architecture[:1].isupper():
        cls = loader.rsplit(".", 1)[-1]
        if cls != architecture:
            raise ModelMismatch(f"{where} holds a {architecture} (config.json) but the loader is {loader}: "
                                f"pass --loader transformers.{architecture}, or import the folder of the model "
                                f"you meant")

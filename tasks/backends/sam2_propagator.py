"""SAM2 propagator: SAM 2.1's video model with mask prompts [M §1.2(e)], in bounded memory and
seam-aware, behind the :class:`~tasks.backends.protocols.Propagator` protocol.

**What the method does and what we change.** The method prompts SAM2.1 (Hiera-L) with every
labelled mask of the keyframe (``add_new_mask``), propagates with ``propagate_in_video`` and
thresholds the logits at 0 [M §1.2(e)]. We keep the model, the prompts and the threshold, and
change three things:

* **memory**: the stock predictor loads the whole video and keeps every frame's output, so
  memory grows with the video. We call the model's per-frame machinery (``track_step``) and keep
  only what it reads (:mod:`tasks.backends.sam2_memory`): per object the last ``max_cond_frames``
  prompted frames, the memory features of the last ``num_maskmem - 1`` frames and the object
  pointers of the last ``max_obj_ptrs_in_encoder - 1`` frames. Frames are taken one chunk
  (``chunk_frames``) at a time; nothing else of the video is held.
* **the seam** [M §6 row 5]: SAM2 sees a wrap-padded frame, ``pad = round(wrap_pad_ratio * W)``
  columns (12.5 % by default) of the right edge copied left of the frame and of the left edge
  copied right of it, so an object crossing the left/right border is contiguous in SAM2's input
  and one object of its memory. Prompts are padded the same way. Predictions are folded back: a
  padded column is an exact copy of one ERP column, so the logits of the two strips are merged
  into their ERP columns by a maximum (:func:`fold_wrap`) — after thresholding at 0 that is the
  OR of the duplicated masks — and the object keeps its single id (no id fusion is needed:
  there is one SAM2 object per id, whichever copy it is seen in).
* **exclusive id maps**: where objects overlap, the highest logit wins (objects are independent
  in SAM2.1; the method's exporter makes masks exclusive).

* **camera rotation** (``derotate``, issue #10 §2): real 360° footage rotates the whole sphere
  from frame to frame, and SAM2's memory attention compares the current frame with remembered
  frames position by position, so every remembered object appears displaced by the camera's
  turn. With ``derotate`` each frame is rotated to the orientation of the *reference* frame (the
  first prompted frame of the video) before SAM2 sees it, and the id map SAM2 returns is rotated
  back (nearest neighbour) to the frame: SAM2's memory sees a still camera, objects move only
  by their own motion. The orientation of frame ``t`` is the product of the frame-to-frame
  rotations (:func:`tasks.geometry.camera_motion.estimate_rotation`, each frame matched against
  the last frame whose orientation is known). One reference for the whole video, not one per
  prompt: the memory bank keeps conditioning frames of earlier prompts, which must stay
  consistent with the current frames. Where the rotation cannot be estimated (a grey or black
  frame, a cut) the frame keeps the last known orientation — that step adds no de-rotation —
  and :attr:`Sam2Propagator.last_motion` says why; after a uniform frame the next frame is matched
  against the last textured one, after a cut the new scene is the new anchor. Prompts given to
  ``reset`` are de-rotated the same way. The rotations run on the model's device
  (:func:`rotate_erp_tensor`, ``grid_sample``); only the estimate runs on the CPU (~13 ms of
  CPU per frame at its 512-column work size).

**Resolution.** SAM2 squashes its input to ``image_size x image_size``. The padded ERP frame
(``H x 1.25 W``, i.e. 1024 x 2560 for a 2048 x 1024 video) becomes S x S: at S = 1024 that is
2.5 ERP columns and 1 ERP row per input pixel. It is resized like the stock loader (bicubic with
antialiasing, then ImageNet mean/std). Prompt masks are resized to S x S as ``add_new_mask`` does
(antialiased bilinear, >= 0.5; an object that would vanish keeps every input pixel it touches).
Output logits (S/4 x S/4) are upsampled bilinearly to the padded frame size, as the stock
predictor upsamples to the video size, then folded. Horizontal precision is therefore about
``1.25 W / (S/4)`` ERP columns per logit cell (10 px at 2048/S=1024) before interpolation.

**Protocol semantics.**

* ``reset(frame, idmap)`` prompts every id of ``idmap`` with its mask on ``frame`` (a
  conditioning frame of that object; new ids become new objects). The map is the truth for what
  is visible: an id SAM2 showed in its last output but absent from the map is removed (refine
  re-adds every track it keeps, so a missing one was deleted or merged). An id SAM2 already
  predicted absent (occluded) stays in memory for up to ``max_hidden_frames`` frames, so SAM2 can
  re-acquire it itself after the occlusion, as the flow propagator keeps coasting hidden objects.
  ``reset`` on the frame just returned by ``step`` (what refine and prompt corrections do)
  reuses that frame's features and replaces its memory by the prompt; ``reset`` on any other
  frame is a new time step. An all-zero map is a valid prompt with no object: ``step`` then
  returns empty maps (no model call) until a reset adds objects.
* ``step(frame)`` tracks the next frame and returns its uint16 id map. ``step_many(frames)``
  does the same for an iterable of frames, encoding ``chunk_frames`` frames per batch (faster
  on a GPU); ``step`` is ``step_many`` of one frame.
* **Resume** after an interruption: build a new propagator and ``reset`` it with the last
  written id map and its frame, then ``step`` on. The new propagator starts with that map as
  its only memory (exactly what refine's reset does), so the continuation is valid but not
  bit-identical to an uninterrupted run, which also remembered older frames.

**CUDA out of memory**: a chunk that runs out of GPU memory is retried with half as many frames
(and the smaller chunk is kept); at one frame it is retried once after emptying the CUDA cache,
then :class:`Sam2OutOfMemory` (transient: another worker may have more free memory) is raised.
Memory updates are applied per frame only after every object of the frame is computed, so a
retried frame is not counted twice.

**Weights** come from the model store (issue 13 §3: ``propagate.sam2_checkpoint`` names a model
imported with ``python -m tasks models import``, checked against its manifest and cached on local
disk by :func:`tasks.models.model_path`; the same model the ``sam2_amg`` entity proposer uses), or
from an explicit file path or single-file store key with ``propagate.sam2_checkpoint_sha256`` —
checked before ``torch.load`` (``weights_only=True``), never from a hub. Random weights
(``ckpt_path=None``) only with ``allow_random_weights=True``, which is for tests and benchmarks.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import threading
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tasks.backends.sam2_memory import FrameFeatures, Sam2Stream, encode_frames
from tasks.errors import ConfigError, DeviceUnavailable, PermanentError, TransientError
from tasks.geometry import camera_motion
from tasks.geometry.camera_motion import CameraMotion, rotation_angle_deg
from tasks.geometry.erp import check_erp
from tasks.labeling.coverage import drop_small_ids
from tasks.models import ModelMissing

log = logging.getLogger(__name__)

MODEL_CONFIGS = {
    "tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "large": "configs/sam2.1/sam2.1_hiera_l.yaml",
}
CHECKPOINT_NAMES = {  # the released SAM 2.1 file names, for messages
    "tiny": "sam2.1_hiera_tiny.pt", "small": "sam2.1_hiera_small.pt",
    "base_plus": "sam2.1_hiera_base_plus.pt", "large": "sam2.1_hiera_large.pt",
}
STORE_PREFIX = "models/"
_IMG_MEAN = (0.485, 0.456, 0.406)
_IMG_STD = (0.229, 0.224, 0.225)
_UPSAMPLE_BATCH = 8      # objects upsampled to frame size at once (bounds the transient memory)
_C_WARNING = "Skipping the post-processing step"
# An accumulated orientation closer to the reference than this is applied as the identity: at
# 2048 columns 0.01 deg is 0.06 px, where resampling would only blur the frame [ours].
_STILL_DEG = 0.01


class CheckpointError(PermanentError):
    """The SAM2 checkpoint is missing, unverified, corrupt or for another model size."""


class Sam2ModelMissing(ModelMissing, CheckpointError):
    """``propagate.sam2_checkpoint`` names a model that is not in the store (exit 2, with the
    ``models import`` to run)."""


class Sam2InputError(PermanentError, ValueError):
    """A frame or prompt id map the propagator cannot use (wrong size, type or values)."""


class Sam2OutOfMemory(TransientError):
    """SAM2 ran out of GPU memory even one frame at a time."""


# -- device -----------------------------------------------------------------------------------------
def resolve_device(requested: str) -> torch.device:
    """``auto``: CUDA if torch sees a GPU, else the CPU; ``cuda``/``cuda:N`` must exist."""
    req = str(requested)
    if req == "cpu":
        return torch.device("cpu")
    if req != "auto" and not (req == "cuda" or req.startswith("cuda:")):
        raise ConfigError(f"propagate.sam2_device is {req!r}; use auto, cuda or cpu")
    if torch.cuda.is_available():
        dev = torch.device("cuda" if req == "auto" else req)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceUnavailable(f"propagate.sam2_device is {req!r} but this machine has "
                                    f"{torch.cuda.device_count()} CUDA device(s); use cuda or auto")
        return dev
    if req == "auto":
        return torch.device("cpu")
    raise DeviceUnavailable(
        f"propagate.sam2_device is {req!r} but torch {torch.__version__} sees no CUDA device "
        f"(built with CUDA {torch.version.cuda}); run this task on a GPU worker, or set "
        "propagate.sam2_device to auto (falls back to the CPU, slowly) or cpu"
    )


# -- checkpoint -------------------------------------------------------------------------------------
def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _store_model(spec: str, store) -> bool:
    """True when ``spec`` names a model of the model store (issue 13 §3: ``models/{spec}/manifest.json``
    in the store, or ``{spec}/manifest.json`` in the mounted ``$LEADER360V_MODELS_DIR``)."""
    from tasks.models import read_manifest
    from tasks.models.manifest import MANIFEST, NAME_RE
    from tasks.models.resolve import MODELS_DIR_ENV

    if not NAME_RE.match(spec) or ".." in spec:
        return False
    mounted = os.environ.get(MODELS_DIR_ENV)
    if mounted and (Path(mounted).expanduser() / spec / MANIFEST).is_file():
        return True
    return store is not None and read_manifest(store, spec) is not None


def _checkpoint_in_model(folder: Path, spec: str, model_size: str) -> Path:
    """The ``.pt`` file of a SAM2 model folder: the only one, else the release name of ``model_size``."""
    pts = sorted(folder.rglob("*.pt"))
    if len(pts) == 1:
        return pts[0]
    named = [p for p in pts if p.name == CHECKPOINT_NAMES[model_size]]
    if len(named) == 1:
        return named[0]
    raise CheckpointError(f"model {spec!r} holds {len(pts)} .pt files ({', '.join(p.name for p in pts[:5]) or 'none'}), "
                          f"none of them {CHECKPOINT_NAMES[model_size]}: import a folder holding one SAM2 checkpoint "
                          f"with `python -m tasks models import DIR --name {spec}`")


@contextlib.contextmanager
def checkpoint_file(spec: str, store=None, model_size: str = "large") -> Iterator[tuple[Path, str | None]]:
    """A readable local path for ``spec`` and, when the model store verified it, its sha256.

    ``spec`` is, in this order: an existing file (a mounted volume; its sha256 must be configured),
    the name of a model in the model store or the mounted models folder (issue 13 §3: the file is
    checked against the model's manifest by :func:`tasks.models.model_path`, cached on local disk),
    or a key of a single file under ``models/`` in the store (the prefix may be left out; its sha256
    must be configured)."""
    path = Path(spec).expanduser()
    if path.is_file():
        yield path, None
        return
    if path.is_absolute() or spec.startswith(("./", "../", "~")):
        raise CheckpointError(f"SAM2 checkpoint {spec!r} does not exist (propagate.sam2_checkpoint); "
                              "mount the model volume there or give the name of a model in the model store")
    if _store_model(spec, store):
        from tasks.models import resolve_model
        from tasks.models.manifest import SAM2_LOADER

        res = resolve_model(spec, store=store, loader=SAM2_LOADER)
        pt = _checkpoint_in_model(res.path, spec, model_size)
        yield pt, res.manifest.file(pt.relative_to(res.path).as_posix()).sha256
        return
    key = spec if spec.startswith(STORE_PREFIX) else STORE_PREFIX + spec.lstrip("/")
    if store is None:
        raise CheckpointError(f"SAM2 checkpoint {spec!r} is neither a local file nor readable from a model "
                              f"store: no store was given to look up {key!r}")
    if not store.exists(key):
        from tasks.models import list_models
        from tasks.models.manifest import NAME_RE

        if NAME_RE.match(spec):   # a model name (configs/production.yaml): a deployment step is missing
            raise Sam2ModelMissing(spec, f"no models/{spec}/manifest.json in the store {store.uri()}, no file {key!r}")
        have = [m.name for m in list_models(store)][:10]
        raise CheckpointError(f"SAM2 checkpoint {spec!r} is neither a model of the store {store.uri()} (models there: "
                              f"{have or 'none'}) nor a file {key!r}; import the folder holding "
                              f"{CHECKPOINT_NAMES[model_size]} once with `python -m tasks models import DIR --name "
                              f"sam2.1-hiera-{model_size.replace('_', '-')}` and set propagate.sam2_checkpoint to that name")
    with store.local_file(key) as p:
        yield Path(p), None


def verify_checksum(path: Path, expected: str | None, spec: str, verified: str | None = None) -> None:
    """Refuse an unverified or altered checkpoint before anything unpickles it.

    ``verified``: the sha256 the model store already checked the file against (its manifest);
    a configured ``expected`` must then agree with it. No message prints a checksum (issue 12
    §9): a digest shown in a refusal gets pasted into the configuration, which defeats the check."""
    if verified is not None:
        if expected is not None and expected.lower() != verified:
            raise CheckpointError(f"SAM2 model {spec!r} in the model store is not the checkpoint "
                                  "propagate.sam2_checkpoint_sha256 names: the model was re-imported from another "
                                  "file, or the setting is stale; remove the setting (the store's manifest is checked "
                                  "on every load) or import the file it names")
        return
    if expected is None:
        raise CheckpointError(f"propagate.sam2_checkpoint_sha256 is not set; refusing to load the unverified "
                              f"checkpoint {spec!r}. Import the checkpoint into the model store (`python -m tasks "
                              "models import DIR --name NAME`, which records its sha256, then set "
                              "propagate.sam2_checkpoint to NAME), or set propagate.sam2_checkpoint_sha256 to the "
                              "sha256 published with the release you downloaded (not one computed from this file)")
    if sha256_of(path) != expected.lower():
        raise CheckpointError(f"SAM2 checkpoint {spec!r} does not have the sha256 propagate.sam2_checkpoint_sha256 "
                              "names: the file is corrupt, truncated or a different release; download it again "
                              "from the release and compare it with the published checksum")


def _load_state_dict(model, path: Path, spec: str, model_size: str) -> None:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise CheckpointError(f"SAM2 checkpoint {spec!r} cannot be read by torch.load: {exc}") from exc
    sd = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"SAM2 checkpoint {spec!r} holds no state dict (expected {{'model': state_dict}} "
                              "as in the released files)")
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"SAM2 checkpoint {spec!r} does not fit the {model_size} model ({MODEL_CONFIGS[model_size]}): "
            f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}); "
            f"is it {CHECKPOINT_NAMES[model_size]}? Set propagate.sam2_model to the checkpoint's size"
        )


_MODEL_LOCK = threading.Lock()
_MODEL_CACHE: dict[tuple, torch.nn.Module] = {}  # one model at a time: a stage uses one


def load_model(model_size: str, *, image_size: int, device: torch.device, checkpoint: str | None = None,
               checkpoint_sha256: str | None = None, store=None, allow_random_weights: bool = False,
               seed: int = 0):
    """The SAM 2.1 video model (``SAM2VideoPredictor``, used only through its per-frame parts),
    cached per process so that building a second propagator costs nothing."""
    if model_size not in MODEL_CONFIGS:
        raise ConfigError(f"propagate.sam2_model is {model_size!r}; use one of {', '.join(MODEL_CONFIGS)}")
    if image_size < 64 or image_size % 32:
        raise ConfigError(f"propagate.sam2_image_size is {image_size}; it must be a multiple of 32 (Hiera's "
                          "first-stage windows are 8 cells of 4 px), e.g. 512 or 1024")
    if checkpoint is None and not allow_random_weights:
        raise CheckpointError(
            f"propagate.sam2_checkpoint is not set: SAM2 needs weights. Import the folder holding "
            f"{CHECKPOINT_NAMES[model_size]} once with `python -m tasks models import DIR --name "
            f"sam2.1-hiera-{model_size.replace('_', '-')}` and set propagate.sam2_checkpoint to that name "
            "(configs/production.yaml does); nothing is downloaded from a hub"
        )
    key = (model_size, int(image_size), str(device), checkpoint, checkpoint_sha256,
           None if checkpoint else int(seed))
    with _MODEL_LOCK:
        model = _MODEL_CACHE.get(key)
        if model is not None:
            return model
        _MODEL_CACHE.clear()
        from sam2.build_sam import build_sam2_video_predictor

        overrides = [f"++model.image_size={int(image_size)}"]
        if checkpoint is None:
            log.warning("SAM2 %s with RANDOM weights (allow_random_weights): masks are meaningless; "
                        "for tests and benchmarks only", model_size)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed))
                model = build_sam2_video_predictor(MODEL_CONFIGS[model_size], ckpt_path=None, device="cpu",
                                                   hydra_overrides_extra=overrides)
        else:
            with checkpoint_file(checkpoint, store, model_size) as (path, verified):
                verify_checksum(path, checkpoint_sha256, checkpoint, verified)
                model = build_sam2_video_predictor(MODEL_CONFIGS[model_size], ckpt_path=None, device="cpu",
                                                   hydra_overrides_extra=overrides)
                _load_state_dict(model, path, checkpoint, model_size)
        model = model.to(device).eval()
        _MODEL_CACHE[key] = model
        return model


# -- seam -------------------------------------------------------------------------------------------
def wrap_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """``[..., W]`` -> ``[..., W + 2 pad]``: the last ``pad`` columns copied before, the first
    ``pad`` after (the 360° frame continues across its left/right border)."""
    if pad <= 0:
        return x
    return torch.cat([x[..., -pad:], x, x[..., :pad]], dim=-1)


def fold_wrap(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Inverse of :func:`wrap_pad` for predictions: ``[..., W + 2 pad]`` -> ``[..., W]``. Each
    padded column is a copy of one ERP column, so its logits are merged into that column by a
    maximum; thresholded at 0 this is the OR of the duplicated masks."""
    if pad <= 0:
        return x
    w = x.shape[-1] - 2 * pad
    if w < pad:
        raise ValueError(f"padding {pad} wider than the frame {w}")
    out = x[..., pad:pad + w].clone()
    out[..., w - pad:] = torch.maximum(out[..., w - pad:], x[..., :pad])     # left strip = last columns
    out[..., :pad] = torch.maximum(out[..., :pad], x[..., pad + w:])        # right strip = first columns
    return out


def exclusive_ids(logits: torch.Tensor, ids: list[int], best: torch.Tensor | None = None,
                  owner: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold ``(n, H, W)`` per-object logits into an id map: a pixel goes to the object with the
    highest logit among those > 0 (ties: the first in ``ids``). ``best``/``owner`` carry the
    running result across batches of objects."""
    h, w = logits.shape[-2:]
    if best is None:
        best = torch.zeros((h, w), dtype=logits.dtype, device=logits.device)   # the 0 threshold
        owner = torch.zeros((h, w), dtype=torch.int32, device=logits.device)
    for i, k in enumerate(ids):
        win = logits[i] > best
        best = torch.where(win, logits[i], best)
        owner = owner.masked_fill(win, int(k))
    return best, owner


def rotate_erp_tensor(x: torch.Tensor, R: np.ndarray, mode: str = "bilinear") -> torch.Tensor:
    """:func:`tasks.geometry.rotation.rotate_erp` for a batch ``(n, c, H, W)`` of ERP frames or
    maps on any torch device: what was at direction ``v`` is at ``R @ v``. ``mode`` is
    ``bilinear`` (frames) or ``nearest`` (id maps, carried as floats: exact up to 2^24).

    Done on the model's device because camera rotations change every frame: with CPU remap
    tables (built once per rotation) de-rotation added ~75 ms per 2048 x 1024 frame to
    SAM2-large's ~130 ms on an H100 machine; on the GPU one rotation takes ~1 ms and the whole
    de-rotation adds 12-18 ms (mostly the CPU rotation estimate). Same sampling as ``rotate_erp`` (pixel
    centres, horizontal wrap) except in the half-pixel caps at the poles, which read the
    outermost row instead of the row across the pole."""
    n, _, h, w = x.shape
    dev = x.device
    Rt = torch.as_tensor(np.asarray(R, dtype=np.float64), dtype=torch.float64).to(device=dev, dtype=torch.float32)
    lon = (torch.arange(w, device=dev, dtype=torch.float32) + 0.5) * (2 * np.pi / w) - np.pi
    lat = np.pi / 2 - (torch.arange(h, device=dev, dtype=torch.float32) + 0.5) * (np.pi / h)
    cl, sl = torch.cos(lat)[:, None], torch.sin(lat)[:, None]
    d = torch.stack([cl * torch.cos(lon)[None], cl * torch.sin(lon)[None], sl.expand(h, w)], dim=-1)
    src = d @ Rt                                  # row vectors: (R.T @ d).T, the source direction
    lon_s = torch.atan2(src[..., 1], src[..., 0])
    lat_s = torch.asin(src[..., 2].clamp(-1.0, 1.0))
    # source pixel position (centres at integers), +1 for the wrap column added on each side
    px = (lon_s + np.pi) * (w / (2 * np.pi)) - 0.5 + 1.0
    py = (np.pi / 2 - lat_s) * (h / np.pi) - 0.5
    grid = torch.stack([px / (w + 1) * 2 - 1, py / max(h - 1, 1) * 2 - 1], dim=-1)[None].expand(n, h, w, 2)
    padded = torch.cat([x[..., -1:], x, x[..., :1]], dim=-1)
    return F.grid_sample(padded, grid, mode=mode, padding_mode="border", align_corners=True)


# -- the propagator ---------------------------------------------------------------------------------
def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError)


class Sam2Propagator:
    """SAM2 video propagation with mask prompts, bounded memory and a seam-aware input."""

    name = "sam2"

    def __init__(self, model_size: str = "large", *, checkpoint: str | None = None,
                 checkpoint_sha256: str | None = None, store=None, image_size: int = 1024,
                 device: str = "auto", chunk_frames: int = 16, wrap_pad_ratio: float = 0.125,
                 max_cond_frames: int = 3, max_hidden_frames: int = 30, min_area_px: int = 0,
                 allow_random_weights: bool = False, seed: int = 0, num_threads: int | None = None,
                 derotate: bool = False, derotate_work_width: int = 512):
        if not 0 <= wrap_pad_ratio < 0.5:
            raise ConfigError(f"wrap_pad_ratio {wrap_pad_ratio} must be in [0, 0.5)")
        if chunk_frames < 1:
            raise ConfigError(f"propagate.sam2_chunk_frames {chunk_frames} must be >= 1")
        self.device = resolve_device(device)
        if num_threads is not None and self.device.type == "cpu":
            torch.set_num_threads(int(num_threads))  # process-wide: torch has no per-model setting
        self.model = load_model(model_size, image_size=int(image_size), device=self.device, checkpoint=checkpoint,
                                checkpoint_sha256=checkpoint_sha256, store=store,
                                allow_random_weights=allow_random_weights, seed=seed)
        self.model_size = model_size
        self.image_size = int(image_size)
        self.chunk_frames = int(chunk_frames)
        self.wrap_pad_ratio = float(wrap_pad_ratio)
        self.max_hidden_frames = int(max_hidden_frames)
        self.min_area_px = int(min_area_px)
        self.derotate = bool(derotate)
        self.derotate_work_width = int(derotate_work_width)
        self.oom_events = 0
        self._stream = Sam2Stream(self.model, max_cond_frames=max_cond_frames)
        self._mean = torch.tensor(_IMG_MEAN, device=self.device)[:, None, None]
        self._std = torch.tensor(_IMG_STD, device=self.device)[:, None, None]
        # SAM2's hole filling needs its CUDA extension (sam2._C); without it fill_holes_in_mask_scores
        # warns on *every* frame and does nothing. So it is attempted only where it can work, and a
        # failure is logged once instead of a warning per frame (the loss is cosmetic: holes of at
        # most fill_hole_area low-res cells stay open)
        self._fill_holes = int(getattr(self.model, "fill_hole_area", 0)) if self._extension_available() else 0
        if getattr(self.model, "fill_hole_area", 0) and not self._fill_holes:
            log.info("SAM2 hole filling (fill_hole_area=%s) skipped: sam2._C CUDA extension unavailable on %s",
                     self.model.fill_hole_area, self.device)
        self._retried_at_one = False
        self._max_buffered = 0
        self._clear()

    def _clear(self) -> None:
        self._stream.objects.clear()
        self._t: int | None = None
        self._shape: tuple[int, int] | None = None
        self._last_frame: np.ndarray | None = None
        self._last_feats: FrameFeatures | None = None
        self._visible: set[int] = set()
        self._hidden: dict[int, int] = {}
        # camera de-rotation: orientation of the last frame relative to the reference frame, and
        # the last frame whose orientation was measured (the anchor the next one is matched to)
        self._last_orient = np.eye(3)
        self._anchor: camera_motion.FrameFeatures | None = None
        self._anchor_orient = np.eye(3)
        self.last_motion: CameraMotion | None = None

    def _extension_available(self) -> bool:
        if self.device.type != "cuda":
            return False
        try:
            return importlib.util.find_spec("sam2._C") is not None
        except (ImportError, ValueError):
            return False

    # -- checks ------------------------------------------------------------------------------------
    @staticmethod
    def _check_frame(frame: np.ndarray) -> tuple[int, int]:
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            got = f"{getattr(frame, 'shape', None)} {getattr(frame, 'dtype', type(frame).__name__)}"
            raise Sam2InputError(f"SAM2 needs RGB uint8 frames (H, W, 3); got {got}")
        return check_erp(frame)

    @staticmethod
    def _check_idmap(idmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        if not isinstance(idmap, np.ndarray) or idmap.shape != shape:
            raise Sam2InputError(f"prompt id map is {getattr(idmap, 'shape', None)} but the frame is {shape}: "
                                 "a prompt must be at the frame's resolution")
        if not np.issubdtype(idmap.dtype, np.integer):
            raise Sam2InputError(f"prompt id map has dtype {idmap.dtype}; it must hold integer track ids (uint16)")
        if idmap.size and (int(idmap.min()) < 0 or int(idmap.max()) > 65535):
            raise Sam2InputError(f"prompt id map values span {int(idmap.min())}..{int(idmap.max())}; track ids "
                                 "are 1..65535 (0 = unlabeled)")
        return idmap

    def _pad(self, width: int) -> int:
        return int(round(width * self.wrap_pad_ratio))

    # -- camera rotation ---------------------------------------------------------------------------
    def _orientation(self, frame: np.ndarray) -> np.ndarray:
        """Rotation carrying the reference frame's content to ``frame`` (the identity without
        ``derotate``); advances the anchor. Frames must come in video order, each once."""
        if not self.derotate:
            return np.eye(3)
        feats = camera_motion.frame_features(frame, work_width=self.derotate_work_width)
        if self._anchor is None:           # the reference frame of this video
            self._anchor, self._anchor_orient = feats, np.eye(3)
            return np.eye(3)
        motion = camera_motion.estimate_rotation(self._anchor, feats)
        self.last_motion = motion
        if motion.ok:
            orient = camera_motion.compose(self._anchor_orient, motion.rotation)
        else:
            # no measured rotation: keep the last known orientation (this step adds none)
            orient = self._anchor_orient
            log.info("SAM2 de-rotation: no camera rotation for this frame (%s, %d matches); "
                     "keeping the last orientation", motion.reason, motion.matches)
        if motion.ok or motion.reason != "uniform":
            # a grey/black frame is skipped: the next frame is matched to the last textured one
            self._anchor, self._anchor_orient = feats, orient
        return orient

    def _rotated(self, x: torch.Tensor, orient: np.ndarray | None, mode: str) -> torch.Tensor:
        """``x`` (n, c, H, W) on the device with its content rotated by ``orient`` (what
        :func:`tasks.geometry.rotation.rotate_erp` does), or ``x`` itself when there is nothing
        to rotate."""
        if orient is None or rotation_angle_deg(orient) < _STILL_DEG:
            return x
        return rotate_erp_tensor(x, orient, mode)

    # -- model input -------------------------------------------------------------------------------
    def _images(self, frames: list[np.ndarray], orients: list[np.ndarray | None] | None = None) -> torch.Tensor:
        """ERP frames -> (de-rotated to the reference orientation by ``orients[i].T``,) wrap-padded,
        squashed, normalised (n, 3, S, S) on the device."""
        s = self.image_size
        pad = self._pad(frames[0].shape[1])
        x = torch.from_numpy(np.stack(frames)).to(self.device).permute(0, 3, 1, 2).float()
        if orients is not None:
            x = torch.cat([self._rotated(x[i:i + 1], None if o is None else o.T, "bilinear")
                           for i, o in enumerate(orients)])
        x = wrap_pad(x, pad)
        # as the stock loader (PIL's antialiased bicubic resize of the uint8 frame)
        x = F.interpolate(x, size=(s, s), mode="bicubic", align_corners=False, antialias=True)
        x = x.clamp_(0, 255).div_(255.0)
        return (x - self._mean) / self._std

    def _prompt_masks(self, idmap: np.ndarray, ids: list[int], orient: np.ndarray | None = None
                      ) -> dict[int, torch.Tensor]:
        """Per id: its mask (de-rotated by ``orient.T``, nearest) wrap-padded and resized to
        S x S as ``add_new_mask`` does. An id the rotation erased (thinner than a pixel) gets
        no prompt."""
        s = self.image_size
        pad = self._pad(idmap.shape[1])
        dev_map = torch.from_numpy(idmap.astype(np.int32)).to(self.device)
        if orient is not None and rotation_angle_deg(orient) >= _STILL_DEG:
            dev_map = self._rotated(dev_map[None, None].float(), orient.T, "nearest")[0, 0].round().int()
            present = set(torch.unique(dev_map).tolist())
            ids = [k for k in ids if k in present]
        out: dict[int, torch.Tensor] = {}
        for i in range(0, len(ids), _UPSAMPLE_BATCH):
            part = ids[i:i + _UPSAMPLE_BATCH]
            keys = torch.tensor(part, dtype=torch.int32, device=self.device)[:, None, None]
            m = wrap_pad((dev_map[None] == keys).float(), pad)[:, None]            # (b, 1, H, W + 2 pad)
            r = F.interpolate(m, size=(s, s), mode="bilinear", align_corners=False, antialias=True)[:, 0]
            for j, k in enumerate(part):
                mk = r[j] >= 0.5
                if not bool(mk.any()):  # too thin to survive the squash: keep every pixel it touches
                    mk = r[j] > 0
                out[int(k)] = mk.float()
        return out

    # -- OOM ---------------------------------------------------------------------------------------
    def _on_oom(self, what: str, exc: BaseException) -> None:
        """Shrink the chunk, or give up: see the module docstring."""
        self.oom_events += 1
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if self.chunk_frames > 1:
            self.chunk_frames = max(1, self.chunk_frames // 2)
            log.warning("CUDA out of memory %s; retrying with chunks of %d frames", what, self.chunk_frames)
            return
        if not self._retried_at_one:
            self._retried_at_one = True
            log.warning("CUDA out of memory %s at one frame per chunk; retrying once after emptying the cache", what)
            return
        raise Sam2OutOfMemory(
            f"SAM2 {self.model_size} at image size {self.image_size} runs out of GPU memory {what} even one frame "
            f"at a time ({len(self._stream.objects)} objects): free the GPU, use a smaller propagate.sam2_model or "
            "propagate.sam2_image_size, or a GPU with more memory"
        ) from exc

    def _guarded(self, what: str, fn):
        """Run ``fn`` and retry it after an out-of-memory error (for work not split in chunks)."""
        while True:
            try:
                out = fn()
                self._retried_at_one = False
                return out
            except torch.cuda.OutOfMemoryError as exc:
                self._on_oom(what, exc)

    # -- protocol ----------------------------------------------------------------------------------
    def reset(self, frame: np.ndarray, idmap: np.ndarray) -> None:
        h, w = self._check_frame(frame)
        idmap = self._check_idmap(idmap, (h, w))
        if self._shape is not None and self._shape != (h, w):
            self._clear()  # another video: nothing of the old one applies
        ids = [int(k) for k in np.unique(idmap) if k != 0]
        with torch.inference_mode():
            same = self._last_frame is not None and (frame is self._last_frame or np.array_equal(frame, self._last_frame))
            orient = self._last_orient if same else self._orientation(frame)
            if same and self._last_feats is not None:
                t, feats = self._t, self._last_feats
            else:
                t = self._t if same else (0 if self._t is None else self._t + 1)
                feats = self._guarded("encoding the reset frame",
                                      lambda: encode_frames(self.model, self._images([frame], [orient]))[0])
            if ids:
                # an id the de-rotation erased (thinner than a pixel) stays present, unprompted
                masks = self._guarded("encoding the prompts", lambda: self._prompt_masks(idmap, ids, orient))
                self._guarded("adding the prompts", lambda: self._stream.add_masks(t, feats, masks))
            present = set(ids)
            gone = [k for k in self._stream.objects
                    if k not in present and (k in self._visible or self.max_hidden_frames <= 0)]
            self._stream.drop(gone)
            for k in list(self._hidden):
                if k in present or k not in self._stream.objects:
                    del self._hidden[k]
            self._visible = present
            self._t, self._shape = t, (h, w)
            self._last_frame, self._last_feats, self._last_orient = frame.copy(), feats, orient
            self._stream.evict(t + 1)

    def forget(self, ids) -> None:
        ids = [int(k) for k in ids]
        self._stream.drop(ids)
        for k in ids:
            self._hidden.pop(k, None)
            self._visible.discard(k)

    def hidden_objects(self, shape: tuple[int, int]) -> dict[int, np.ndarray]:
        """SAM2 re-acquires occluded objects from its own memory and has no predicted location
        for them, so it reports none (refine then relies on its appearance memory alone)."""
        return {}

    def step(self, frame: np.ndarray) -> np.ndarray:
        for idm in self.step_many([frame]):
            return idm
        raise RuntimeError("unreachable: step_many yields one map per frame")

    def step_many(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """One id map per frame, frames taken ``chunk_frames`` at a time (image encoder batched
        per chunk). Do not ``reset`` while iterating; use ``step`` to interleave resets."""
        if self._t is None:
            raise RuntimeError("Sam2Propagator.step called before reset")
        it = iter(frames)
        buf: list[np.ndarray] = []
        exhausted = False
        while True:
            while not exhausted and len(buf) < self.chunk_frames:
                f = next(it, None)
                if f is None:
                    exhausted = True
                    break
                if self._check_frame(f) != self._shape:
                    raise Sam2InputError(f"frame is {f.shape[:2]} but the video is {self._shape}; "
                                         "reset with the new size first")
                # orientations are measured in frame order as frames are taken, once each (a
                # chunk retried after an out-of-memory error keeps them)
                orient = self._orientation(f)
                buf.append((f, orient))
            if not buf:
                return
            self._max_buffered = max(self._max_buffered, len(buf))
            n = min(len(buf), self.chunk_frames)
            done = 0
            try:
                with torch.inference_mode():
                    feats = (encode_frames(self.model, self._images([f for f, _ in buf[:n]], [o for _, o in buf[:n]]))
                             if self._stream.objects else [None] * n)
                for i in range(n):
                    with torch.inference_mode():
                        idm = self._track(buf[i][0], feats[i], buf[i][1])
                    feats[i] = None
                    done += 1
                    self._retried_at_one = False
                    yield idm
            except torch.cuda.OutOfMemoryError as exc:
                self._on_oom(f"on a chunk of {n} frames", exc)
            finally:
                feats = None
            buf = buf[done:]

    # -- one frame ---------------------------------------------------------------------------------
    def _track(self, frame: np.ndarray, feats: FrameFeatures | None, orient: np.ndarray) -> np.ndarray:
        """Track one frame and return its id map. Re-running it after an exception is safe: the
        stream's entry for this frame is written last and is not read when tracking it."""
        h, w = self._shape
        t = self._t + 1
        if self._stream.objects:
            logits = self._stream.track(t, feats)
            idm = self._compose(logits, h, w, orient)
        else:
            idm = np.zeros((h, w), np.uint16)
        present = set(np.unique(idm).tolist()) - {0}
        for k in list(self._stream.objects):
            if k in present:
                self._hidden.pop(k, None)
                continue
            self._hidden[k] = self._hidden.get(k, 0) + 1
            if self._hidden[k] > self.max_hidden_frames:
                self._stream.drop([k])
                del self._hidden[k]
        self._visible = present
        self._t = t
        self._last_frame, self._last_feats, self._last_orient = frame.copy(), feats, orient
        self._stream.evict(t + 1)
        return idm

    def _compose(self, logits: dict[int, torch.Tensor], h: int, w: int, orient: np.ndarray | None = None
                 ) -> np.ndarray:
        """Low-res logits of every object -> the exclusive, seam-folded uint16 id map (rotated
        from the reference orientation to the frame's by ``orient``, nearest)."""
        pad = self._pad(w)
        order = sorted(logits)
        low = torch.stack([logits[k] for k in order])  # (n, 1, S/4, S/4)
        if self._fill_holes:
            low = self._fill(low)
        # bilinear upsampling cannot make a non-positive map positive: skip absent objects
        keep = (low.amax(dim=(1, 2, 3)) > 0).cpu().tolist()
        ids = [k for k, y in zip(order, keep) if y]
        lows = [low[i:i + 1] for i, y in enumerate(keep) if y]
        best = owner = None
        for i in range(0, len(ids), _UPSAMPLE_BATCH):
            up = F.interpolate(torch.cat(lows[i:i + _UPSAMPLE_BATCH]).float(), size=(h, w + 2 * pad),
                               mode="bilinear", align_corners=False)[:, 0]
            best, owner = exclusive_ids(fold_wrap(up, pad), ids[i:i + _UPSAMPLE_BATCH], best, owner)
        if owner is None:
            return np.zeros((h, w), np.uint16)
        owner = self._rotated(owner[None, None].float(), orient, "nearest")[0, 0].round().int()
        return drop_small_ids(owner.cpu().numpy().astype(np.uint16), self.min_area_px)

    def _fill(self, low: torch.Tensor) -> torch.Tensor:
        from sam2.utils.misc import fill_holes_in_mask_scores

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = fill_holes_in_mask_scores(low, self._fill_holes)
        if any(_C_WARNING in str(c.message) for c in caught):
            log.warning("SAM2 hole filling failed on %s (sam2._C); disabled for this propagator", self.device)
            self._fill_holes = 0
        return out

    # -- introspection -----------------------------------------------------------------------------
    def stats(self) -> dict:
        """State sizes (tests, benchmarks): per-object memory entries by kind (with their bound),
        objects, bytes held by the memory bank, the most frames ever buffered at once."""
        s = self._stream.stats()
        s.update(bound=self._stream.spec.bound, max_frames_buffered=self._max_buffered,
                 hidden=dict(self._hidden), chunk_frames=self.chunk_frames, oom_events=self.oom_events)
        return s


def build_sam2_propagator(config, width: int, store=None, *, allow_random_weights: bool = False) -> Sam2Propagator:
    """The SAM2 propagator of ``config.propagate`` for frames of width ``width`` (the area
    threshold scales with it). ``store`` resolves a checkpoint given as a model-store key."""
    pc = config.propagate
    return Sam2Propagator(
        pc.sam2_model, checkpoint=pc.sam2_checkpoint, checkpoint_sha256=pc.sam2_checkpoint_sha256, store=store,
        image_size=pc.sam2_image_size, device=pc.sam2_device, chunk_frames=pc.sam2_chunk_frames,
        wrap_pad_ratio=pc.wrap_pad_ratio, min_area_px=config.min_area(width, pc.min_area_px_at_2048),
        allow_random_weights=allow_random_weights, derotate=pc.sam2_derotate,
    )

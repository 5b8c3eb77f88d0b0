"""Where and how the learned proposers run: device choice, CUDA autocast, out-of-memory retries.

Shared by the SAM2 entity proposer (:mod:`tasks.backends.sam2_entities`) and the panoptic voters
(:mod:`tasks.backends.panoptic_hf`), which are configured by ``propose.device`` and
``propose.autocast`` (the propagator has its own ``propagate.sam2_device``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

from tasks.errors import ConfigError, DeviceUnavailable, TransientError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class ProposalOutOfMemory(TransientError):
    """A proposer ran out of GPU memory even one item at a time (transient: another worker, or
    the same one with less load, may have the memory)."""


def resolve_device(requested: str, setting: str = "propose.device") -> torch.device:
    """``auto``: CUDA when torch sees a GPU, else the CPU; ``cuda``/``cuda:N`` must exist.

    A pod that asked for a GPU and got none (a node without the driver, a CPU-only image, a
    missing ``nvidia.com/gpu`` limit) fails at once with exit 2 rather than running a GPU
    model on the CPU for hours [issue 13, bad input]."""
    req = str(requested)
    if req == "cpu":
        return torch.device("cpu")
    if req != "auto" and not (req == "cuda" or req.startswith("cuda:")):
        raise ConfigError(f"{setting} is {req!r}; use auto, cuda or cpu")
    if torch.cuda.is_available():
        dev = torch.device("cuda" if req == "auto" else req)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceUnavailable(f"{setting} is {req!r} but this machine has {torch.cuda.device_count()} "
                                    "CUDA device(s); use cuda or auto")
        return dev
    if req == "auto":
        return torch.device("cpu")
    raise DeviceUnavailable(
        f"{setting} is {req!r} but torch {torch.__version__} sees no CUDA device (built with CUDA "
        f"{torch.version.cuda}); run this stage on a GPU worker (the pod needs an nvidia.com/gpu limit and a "
        f"CUDA build of torch), or set {setting} to auto (falls back to the CPU, slowly) or cpu"
    )


_AUTOCAST = {"fp16": torch.float16, "bf16": torch.bfloat16}


def autocast_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``mode`` (``off``/``fp16``/``bf16``) on ``device``: None on the CPU
    (the setting is for CUDA; CPU autocast would change labels for no speed on these models)."""
    if mode not in ("off", *_AUTOCAST):
        raise ConfigError(f"propose.autocast is {mode!r}; use off, fp16 or bf16")
    if mode == "off" or device.type != "cuda":
        return None
    if mode == "bf16" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"propose.autocast is bf16 but {torch.cuda.get_device_name(device)} has no bfloat16 "
                          "support; use fp16 or off")
    return _AUTOCAST[mode]


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` on CUDA with ``dtype``, or nothing."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError)


def run_batched(items: Sequence[T], batch: int, fn: Callable[[Sequence[T]], R], *, what: str,
                device: torch.device) -> tuple[list[R], int]:
    """``fn`` over ``items`` in batches of ``batch``; a batch that runs out of CUDA memory is
    retried with half as many items (the smaller size is kept for the rest), at one item once more
    after emptying the CUDA cache, then :class:`ProposalOutOfMemory`. Returns ``fn``'s result per
    batch, in order, and the batch size that worked (the propagator's policy, issue 13)."""
    out: list[R] = []
    i, size, retried_at_one = 0, max(1, int(batch)), False
    while i < len(items):
        chunk = items[i:i + size]
        try:
            res = fn(chunk)
        except Exception as exc:  # noqa: BLE001 - only CUDA OOM is handled, the rest re-raised
            if not is_oom(exc):
                raise
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if size > 1:
                size = max(1, size // 2)
                log.warning("CUDA out of memory %s with a batch of %d; retrying with %d", what, len(chunk), size)
                continue
            if not retried_at_one:
                retried_at_one = True
                log.warning("CUDA out of memory %s with a batch of 1; retrying once after emptying the cache", what)
                continue
            raise ProposalOutOfMemory(f"CUDA out of memory {what} even one at a time ({exc}); the GPU is shared or "
                                      "too small for this model: run the stage on a worker with more free GPU memory, "
                                      "or a smaller model") from exc
        out.append(res)
        i += len(chunk)
    return out, size

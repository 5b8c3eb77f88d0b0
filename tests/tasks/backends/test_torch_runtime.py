"""Device choice, autocast setting and the out-of-memory batch policy of the learned proposers."""

from __future__ import annotations

import pytest
import torch

from tasks.backends.torch_runtime import (
    DeviceUnavailable,
    ProposalOutOfMemory,
    autocast,
    autocast_dtype,
    resolve_device,
    run_batched,
)
from tasks.errors import EXIT_USAGE, ConfigError


def test_device_choice_and_its_errors(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    for req in ("cuda", "cuda:1"):
        with pytest.raises(DeviceUnavailable, match=f"propose.device is '{req}'.*GPU worker") as err:
            resolve_device(req)
        assert err.value.exit_code == EXIT_USAGE
    with pytest.raises(ConfigError, match="use auto, cuda or cpu"):
        resolve_device("tpu")
    # a GPU machine with one card: cuda:1 does not exist
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda")
    with pytest.raises(DeviceUnavailable, match="1 CUDA device"):
        resolve_device("cuda:1")


def test_autocast_is_for_cuda_only():
    cpu = torch.device("cpu")
    assert autocast_dtype("off", cpu) is None
    assert autocast_dtype("bf16", cpu) is None and autocast_dtype("fp16", cpu) is None
    with pytest.raises(ConfigError, match="off, fp16 or bf16"):
        autocast_dtype("fp8", cpu)
    with autocast(cpu, None):
        assert not torch.is_autocast_enabled("cpu")


def _oom(msg="CUDA out of memory (simulated)"):
    return torch.cuda.OutOfMemoryError(msg)


def test_batches_halve_on_oom_and_keep_the_smaller_size():
    calls = []

    def fn(chunk):
        calls.append(len(chunk))
        if len(chunk) > 2:
            raise _oom()
        return [x * 10 for x in chunk]

    parts, size = run_batched(list(range(7)), 8, fn, what="test", device=torch.device("cpu"))
    assert [x for p in parts for x in p] == [x * 10 for x in range(7)]
    assert size == 2 and calls == [7, 4, 2, 2, 2, 1]


def test_one_item_is_retried_once_then_a_transient_error():
    calls = []

    def fn(chunk):
        calls.append(len(chunk))
        raise _oom()

    with pytest.raises(ProposalOutOfMemory, match="even one at a time") as err:
        run_batched([1, 2], 2, fn, what="test", device=torch.device("cpu"))
    assert calls == [2, 1, 1] and err.value.retryable


def test_other_errors_are_not_retried():
    calls = []

    def fn(chunk):
        calls.append(len(chunk))
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        run_batched([1, 2, 3], 3, fn, what="test", device=torch.device("cpu"))
    assert calls == [3]

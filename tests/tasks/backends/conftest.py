"""Fixtures shared by the learned-backend tests (SAM2 entities, Mask2Former/OneFormer voters)."""

import pytest


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory):
    """Models resolved from a store are cached here, not in the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LEADER360V_MODEL_CACHE", str(tmp_path_factory.mktemp("model_cache")))
        yield


@pytest.fixture(scope="module")
def two_torch_threads():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)

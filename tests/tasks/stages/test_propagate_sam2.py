"""The propagate stage with SAM2 configured: checkpoint from the model store (checksum checked),
chunked encoding through ``follow``, one step per frame, an id map per frame."""

import hashlib
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tasks import layout  # noqa: E402
from tasks.config import PipelineConfig  # noqa: E402
from tasks.errors import PermanentError  # noqa: E402
from tasks.formats.idmap import decode_png  # noqa: E402
from tasks.stages.runner import execute, load_manifest, output_key  # noqa: E402
from tasks.storage import LocalStore  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny SAM2.1 checkpoint with random weights (no real weights exist here)."""
    from sam2.build_sam import build_sam2

    model = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=None, device="cpu",
                       hydra_overrides_extra=["++model.image_size=128"])
    path = tmp_path_factory.mktemp("models") / "sam2.1_hiera_tiny.pt"
    torch.save({"model": model.state_dict()}, path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_propagate_stage_runs_sam2_from_the_model_store(labeled_tiny, checkpoint, tmp_path):
    src, vid, _, _ = labeled_tiny
    shutil.copytree(src.root, tmp_path / "s")
    store = LocalStore(tmp_path / "s")
    path, sha = checkpoint
    store.put_file("models/sam2/sam2.1_hiera_tiny.pt", path)
    cfg = PipelineConfig().with_overrides({
        "propagate.backend": "sam2", "propagate.sam2_model": "tiny", "propagate.sam2_image_size": 128,
        "propagate.sam2_device": "cpu", "propagate.sam2_checkpoint": "models/sam2/sam2.1_hiera_tiny.pt",
        "propagate.sam2_checkpoint_sha256": sha, "propagate.sam2_chunk_frames": 4})
    execute("ingest", store=store, config=cfg, params={"key": "raw/tiny.mp4"})
    for stage in ("decode", "propose", "verify", "sdr", "propagate"):
        execute(stage, store=store, config=cfg, video_id=vid)
    m = load_manifest(store, vid, cfg.hash, "propagate")
    assert m["stats"]["propagator_steps_per_frame"] == 1.0      # SAM2 runs once per frame, chunks and refreshes included
    prefix = output_key(store, m, "idmaps")
    maps = [decode_png(store.get_bytes(f"{prefix}{t:05d}.png")) for t in range(16)]
    assert all(x.shape == (128, 256) for x in maps)
    sdr = load_manifest(store, vid, cfg.hash, "sdr")
    first = decode_png(store.get_bytes(output_key(store, sdr, "objects") + "00000.png"))
    assert (maps[0] == first).all()                              # the prompts themselves on frame 0
    tracks = set(int(k) for k in store.get_json(output_key(store, m, "tracks"))["tracks"])
    assert set(np.unique(np.concatenate([x.ravel() for x in maps])).tolist()) - {0} <= tracks


def test_wrong_checksum_stops_the_stage_before_loading(labeled_tiny, checkpoint, tmp_path):
    src, vid, _, _ = labeled_tiny
    shutil.copytree(src.root, tmp_path / "s")
    store = LocalStore(tmp_path / "s")
    path, _ = checkpoint
    cfg = PipelineConfig().with_overrides({
        "propagate.backend": "sam2", "propagate.sam2_model": "tiny", "propagate.sam2_image_size": 128,
        "propagate.sam2_device": "cpu", "propagate.sam2_checkpoint": str(path),
        "propagate.sam2_checkpoint_sha256": "0" * 64})
    execute("ingest", store=store, config=cfg, params={"key": "raw/tiny.mp4"})
    for stage in ("decode", "propose", "verify", "sdr"):
        execute(stage, store=store, config=cfg, video_id=vid)
    with pytest.raises(PermanentError, match="sha256"):
        execute("propagate", store=store, config=cfg, video_id=vid)
    assert not store.exists(layout.manifest_key(vid, cfg.hash, "propagate"))

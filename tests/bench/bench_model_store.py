"""Model store round trip for a 200 MB model folder (issue 13 §3/"Numbers"): import, verify, load.

    .venv/bin/python tests/bench/bench_model_store.py [--mb 200] [--repeat 3]

The folder is what ``save_pretrained`` writes: ``config.json`` and one ``model.safetensors`` of
random float32 tensors (``--mb`` megabytes), so *load* is the real thing a voter does first:
:func:`tasks.models.model_path` (fetch into the local cache, hash every byte against the manifest)
then ``safetensors.torch.load_file`` of the weights. Rows (median of ``--repeat`` runs, each into a
fresh store and cache on local disk):

* import -- ``python -m tasks models import`` as a function: hash + copy into the store, manifest last;
* verify -- ``models verify``: every file read back from the store and hashed;
* cold load -- ``model_path`` into an empty cache (copy + hash) + reading the weights;
* warm load -- ``model_path`` again (the cache is re-used after a size/mtime check) + reading the weights;
* warm model_path -- the check alone.

A local store (a folder), files fresh in the page cache: the numbers are copy and sha256 speed,
a floor for MinIO, where the transfer adds the network's time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import emit

from tasks.models import import_model, model_path, verify_model
from tasks.storage import LocalStore


def make_folder(folder: Path, mb: int) -> int:
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    n = mb * 2**20 // 4
    tensors, left, i = {}, n, 0
    while left > 0:                                   # 16 M-float tensors, like a large model's layers
        k = min(left, 16 * 2**20)
        tensors[f"layer{i}.weight"] = rng.standard_normal(k, dtype=np.float32)
        left, i = left - k, i + 1
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"architectures": ["Mask2FormerForUniversalSegmentation"],
                                                     "model_type": "mask2former"}))
    save_file(tensors, str(folder / "model.safetensors"))
    return sum(p.stat().st_size for p in folder.iterdir())


def load_weights(folder: Path) -> int:
    from safetensors.torch import load_file

    # load_file maps the file; clone() reads every byte into memory, as loading into a model does
    return sum(t.clone().numel() for t in load_file(str(folder / "model.safetensors")).values())


def one_round(tmp: Path, src: Path, i: int) -> dict:
    store = LocalStore(tmp / f"store{i}")
    cache = tmp / f"cache{i}"
    t = {}
    t0 = time.perf_counter()
    import_model(store, src, "bench-model", source="bench", license="none")
    t["import"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    verify_model(store, "bench-model")
    t["verify"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = load_weights(model_path("bench-model", store=store, cache_dir=cache))
    t["cold load"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    load_weights(model_path("bench-model", store=store, cache_dir=cache))
    t["warm load"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    model_path("bench-model", store=store, cache_dir=cache)
    t["warm model_path"] = time.perf_counter() - t0
    assert n * 4 <= src.joinpath("model.safetensors").stat().st_size
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-models-", dir=None) as d:
        tmp = Path(d)
        size = make_folder(tmp / "src", a.mb)
        runs = [one_round(tmp, tmp / "src", i) for i in range(a.repeat)]
    rows = []
    for step in runs[0]:
        s = statistics.median(r[step] for r in runs)
        rows.append({"step": step, "seconds": round(s, 3),
                     "MB_per_s": round(size / 1e6 / s, 1) if step != "warm model_path" else "",
                     "runs": a.repeat})
    total = sum(r["seconds"] for r in rows if r["step"] in ("import", "verify", "cold load"))
    emit("model_store", rows, {"folder_mb": round(size / 1e6, 1), "round_trip_s": round(total, 2),
                               "store": "local folder", "repeat": a.repeat})


if __name__ == "__main__":
    sys.exit(main())

"""Parse time of each DAG file: a fresh interpreter imports it (what the dag-processor pays)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from common import REPO, emit


def main(repeats: int = 5) -> dict:
    rows = []
    env = dict(os.environ, PYTHONPATH=str(REPO / "plugins"), AIRFLOW__CORE__LOAD_EXAMPLES="False")
    for path in sorted((REPO / "dags").glob("*.py")):
        times = []
        for _ in range(repeats):
            code = ("import runpy, time, json; import airflow.sdk; t = time.perf_counter(); "
                    f"runpy.run_path({str(path)!r}); print(json.dumps(time.perf_counter() - t))")
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
            times.append(json.loads(out.stdout.strip().splitlines()[-1]))
        rows.append({"dag_file": path.name, "median_ms": round(1000 * statistics.median(times), 1),
                     "max_ms": round(1000 * max(times), 1)})
    return emit("dag_parse", rows, {r["dag_file"]: r["median_ms"] for r in rows})


if __name__ == "__main__":
    main()

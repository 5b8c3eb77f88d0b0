"""Seconds per frame of ``python -m tasks label`` on the CPU at 1024x512 and 2048x1024.

Synthetic clips (``tasks synth``, seed 0, 3 s at 10 fps = 30 frames); every stage runs from an
empty store; the per-stage split comes from the stage manifests.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from common import emit, run

PY = sys.executable


def bench(width: int, seconds: float, fps: float, work: Path) -> dict:
    clip = work / f"clip{width}"
    run([PY, "-m", "tasks", "synth", "--out", str(clip), "--seconds", str(seconds), "--fps", str(fps),
         "--width", str(width), "--seed", "0", "--camera", "still", "--no-progress"])
    wall, proc = run([PY, "-m", "tasks", "label", str(clip / "clip.mp4"), "--out", str(work / f"out{width}"),
                      "--no-progress"])
    res = json.loads(proc.stdout)
    n = res["frames"]
    row = {"size": f"{width}x{width // 2}", "frames": n, "wall_s": round(wall, 1),
           "s_per_frame": round(wall / n, 3)}
    for stage, s in res["stage_seconds"].items():
        row[f"{stage}_s"] = round(s, 2)
    return row


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--widths", default="1024,2048")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [bench(int(w), a.seconds, a.fps, Path(tmp)) for w in a.widths.split(",")]
    return emit("label_speed", rows, {r["size"]: r["s_per_frame"] for r in rows})


if __name__ == "__main__":
    main()

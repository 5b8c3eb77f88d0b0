"""Following a video with a propagator, frame by frame, from one frame's id map.

Used by the tracking pass (:mod:`tasks.stages.propagate`); lives here so that stages do not
import each other (issue 10, "The house").
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from tasks.labeling import prompts as prompts_mod
from tasks.video.framestore import Frames


def follow(frames: Frames, start: int, idmap: np.ndarray, propagator, prompts=None, *,
           chunk: int = 1, every: int = 0) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(t, frame, idmap)`` from ``start`` on.

    The caller may ``propagator.reset`` after an item to correct the state (the tracking pass
    does, at its check frames, every ``every`` frames); the next step continues from there. A
    propagator with ``step_many`` (SAM2) gets frames ``chunk`` at a time so its image encoder
    runs batched; a chunk never runs past a prompt frame or a check frame, where the state may
    be reset. Every frame after ``start`` costs exactly one propagator step.
    """
    width = frames.width
    many = getattr(propagator, "step_many", None)
    it = frames.iter(start)
    first = next(it, None)
    if first is None:
        return
    propagator.reset(first, idmap)
    yield start, first, idmap
    t = start + 1
    while t < len(frames):
        n = 1
        if many is not None and chunk > 1:
            n = min(chunk, len(frames) - t)
            for k in range(n):
                u = t + k
                if (every and u % every == 0) or (prompts is not None and prompts.at(u, width) is not None):
                    n = k + 1  # stop at the first frame where the state may change
                    break
        batch = [next(it) for _ in range(n)]
        outs = list(many(batch)) if n > 1 else [propagator.step(batch[0])]
        for frame, cur in zip(batch, outs):
            if prompts is not None:
                p = prompts.at(t, width)
                if p is not None:
                    cur = prompts_mod.apply(cur, p)
                    propagator.reset(frame, cur)
            yield t, frame, cur
            t += 1

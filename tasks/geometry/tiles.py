"""The method's seam-aware tiling of an ERP frame, and its exact inverse [M §1.2(a)].

The frame is wrap-padded by ``pad = int(W * pad_ratio)`` columns per side and cut into ``n``
overlapping windows with ``overlap = pad``. For W = 2048, pad_ratio = 0.125, n = 3 this gives the
method's windows [0:1024], [768:1792], [1536:2560]: three square 1024 x 1024 tiles.

Every tile column maps to exactly one ERP column (``(x_padded - pad) mod W``), so a tile-space
mask lands back on the ERP frame pixel-exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tasks.geometry.erp import check_erp_shape, wrap_pad


@dataclass(frozen=True)
class TileLayout:
    width: int        # ERP width W
    height: int       # ERP height H
    pad: int          # wrap padding per side
    overlap: int      # overlap between neighbouring tiles
    size: int         # tile width
    starts: tuple[int, ...]  # tile start columns in padded coordinates

    @property
    def padded_width(self) -> int:
        return self.width + 2 * self.pad

    def erp_columns(self, tile: int) -> np.ndarray:
        """ERP column of every column of tile ``tile``."""
        x = np.arange(self.starts[tile], self.starts[tile] + self.size)
        return np.mod(x - self.pad, self.width)


def tile_layout(height: int, width: int, pad_ratio: float = 0.125, n_tiles: int = 3) -> TileLayout:
    check_erp_shape(height, width)
    if n_tiles < 1:
        raise ValueError("n_tiles must be >= 1")
    pad = int(width * pad_ratio)
    overlap = pad
    padded = width + 2 * pad
    size = math.ceil((padded + (n_tiles - 1) * overlap) / n_tiles)
    size = min(size, padded)
    if n_tiles == 1:
        starts = (0,)
    else:
        starts = tuple(int(round(s)) for s in np.linspace(0, padded - size, n_tiles))
    return TileLayout(width, height, pad, overlap, size, starts)


def cut_tiles(frame: np.ndarray, layout: TileLayout) -> list[np.ndarray]:
    """The tiles of ``frame`` (views into one padded copy)."""
    padded = wrap_pad(frame, layout.pad)
    return [padded[:, s:s + layout.size] for s in layout.starts]


def tile_mask_to_erp(mask: np.ndarray, layout: TileLayout, tile: int) -> np.ndarray:
    """Scatter a boolean tile-space mask back onto a full ERP mask (OR where columns repeat)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (layout.height, layout.size):
        raise ValueError(f"tile mask has shape {mask.shape}, expected {(layout.height, layout.size)}")
    out = np.zeros((layout.height, layout.width), dtype=bool)
    cols = layout.erp_columns(tile)
    # columns of one tile are distinct unless the tile is wider than W; handle both
    if len(np.unique(cols)) == cols.size:
        out[:, cols] = mask
    else:
        for j, c in enumerate(cols):
            out[:, c] |= mask[:, j]
    return out


def tile_overlap_columns(layout: TileLayout, a: int, b: int) -> np.ndarray:
    """ERP columns seen by both tile ``a`` and tile ``b``."""
    return np.intersect1d(layout.erp_columns(a), layout.erp_columns(b))

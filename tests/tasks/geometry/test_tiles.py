import numpy as np
import pytest

from tasks.errors import NotEquirectangular
from tasks.geometry.tiles import cut_tiles, tile_layout, tile_mask_to_erp


def test_method_layout_at_2048():
    lay = tile_layout(1024, 2048)
    assert (lay.pad, lay.overlap, lay.size, lay.starts) == (256, 256, 1024, (0, 768, 1536))
    assert lay.padded_width == 2560


@pytest.mark.parametrize("h", [32, 64, 128, 512])
def test_tiles_cover_every_column_and_map_back_pixel_exact(h):
    w = 2 * h
    lay = tile_layout(h, w)
    frame = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    tiles = cut_tiles(frame, lay)
    seen = np.zeros(w, int)
    for t, tile in enumerate(tiles):
        cols = lay.erp_columns(t)
        assert (tile == frame[:, cols]).all()   # tile pixels are ERP pixels, exactly
        seen[cols] += 1
        mask = np.zeros(tile.shape[:2], bool)
        mask[h // 4:h // 2, ::3] = True
        back = tile_mask_to_erp(mask, lay, t)
        assert (back[:, cols] == mask).all() and back.sum() == mask.sum()
    assert (seen >= 1).all()
    # the first and last tiles share the columns around the seam
    assert set(lay.erp_columns(0)) & set(lay.erp_columns(2)) >= {0, w - 1}


def test_tiling_rejects_non_erp():
    with pytest.raises(NotEquirectangular):
        tile_layout(100, 150)

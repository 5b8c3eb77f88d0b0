"""qa's flag thresholds are settings (issue 12 §10): qa.seam_color_tol, qa.fragment_share."""

from __future__ import annotations

import numpy as np

from tasks.config import PipelineConfig
from tasks.stages.qa import _fragments, seam_mismatch


def test_seam_colour_tolerance_decides_where_the_image_continues():
    frame = np.zeros((8, 16, 3), np.uint8)
    frame[:, 0] = 100
    frame[:, -1] = 120            # the two border columns differ by 20 (RGB mean)
    idm = np.zeros((8, 16), np.uint16)
    idm[:, 0], idm[:, -1] = 1, 2  # and the ids change across the seam on every row
    default = PipelineConfig().qa.seam_color_tol
    assert default == 12.0 and seam_mismatch(frame, idm, default) == 0.0     # an edge in the image: no flag
    tolerant = PipelineConfig().with_overrides({"qa.seam_color_tol": 30}).qa.seam_color_tol
    assert seam_mismatch(frame, idm, tolerant) == 1.0                          # continuous: every row split
    idm[:, -1] = 1
    assert seam_mismatch(frame, idm, tolerant) == 0.0                          # one id across: fine


def test_fragment_share_decides_what_is_a_second_piece():
    mask = np.zeros((10, 40), bool)
    mask[2:8, 5:15] = True        # 60 px
    mask[2:4, 25:28] = True       # 6 px apart: 1/11 of the area
    assert _fragments(mask, PipelineConfig().qa.fragment_share) == 1          # 0.09 < 0.1: a speck
    assert _fragments(mask, 0.05) == 2

"""Real-footage looks of moving-camera clips: multi-colour and photo surfaces, light, compression."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest

from tasks.synth.look import PATCH, Lighting, RichLook, compress, load_photos


def _grid():
    p, q = np.meshgrid(np.linspace(-1, 1, 64, dtype=np.float32), np.linspace(-1, 1, 64, dtype=np.float32))
    return p.ravel(), q.ravel()


def test_procedural_look_has_several_distinct_colours_away_from_sky_and_grass():
    for seed in range(6):
        look = RichLook.random(np.random.default_rng(seed))
        cols = look(*_grid())
        distinct = np.unique(cols, axis=0)
        assert 2 <= len(distinct) <= 4 and look.patch is None
        assert len(distinct) >= 2 and np.ptp(cols, axis=0).max() > 30
        for c in look.colours:  # hues well away from the sky's blue (~215) and the grass's green (~95)
            hue = colorsys.rgb_to_hsv(*(c / 255.0))[0] * 360
            for bg in (215.0, 95.0):
                assert min(abs(hue - bg), 360 - abs(hue - bg)) > 30


def test_photo_look_samples_the_photo(tmp_path):
    rng = np.random.default_rng(0)
    photo = np.zeros((200, 400, 3), np.uint8)
    photo[:, :200] = (200, 30, 30)
    photo[:, 200:] = (30, 30, 200)
    look = RichLook.random(rng, [photo])
    assert look.patch is not None and look.patch.shape == (PATCH, PATCH, 3)
    cols = look(*_grid())
    assert set(map(tuple, np.unique(cols, axis=0).astype(int))) <= {(200, 30, 30), (30, 30, 200)} | set(
        map(tuple, np.unique(look.patch.reshape(-1, 3), axis=0).astype(int)))
    import cv2

    cv2.imwrite(str(tmp_path / "stereo.jpg"), np.zeros((64, 64, 3), np.uint8))
    assert load_photos([tmp_path / "stereo.jpg"])[0].shape == (32, 64, 3)  # top eye of a square image
    with pytest.raises(ValueError):
        load_photos([tmp_path / "missing.jpg"])


def test_lighting_changes_smoothly_within_bounds():
    light = Lighting.random(np.random.default_rng(4))
    gains = np.array([light.gain(s) for s in np.linspace(0, 1, 50)])
    assert np.all(gains > 0.8) and np.all(gains < 1.25)
    assert np.ptp(gains[:, 0]) > 0.05  # it does change
    assert np.abs(np.diff(gains, axis=0)).max() < 0.05  # and smoothly
    img = np.full((4, 8, 3), 200, np.uint8)
    assert light.apply(img, 0.3).dtype == np.uint8


def test_compress_adds_artefacts_but_keeps_the_picture():
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(128, 40, (64, 128, 3)), 0, 255).astype(np.uint8)
    out = compress(img, 60)
    assert out.shape == img.shape and out.dtype == np.uint8
    diff = np.abs(out.astype(int) - img)
    assert 2 < diff.mean() < 40

"""Fuzz: the prompts loader (``label --prompts``) under random structure and values.

Whatever the bytes, :func:`tasks.labeling.prompts.load_bytes` / :func:`parse` either return
prompts whose masks do not overlap, or raise a :class:`~tasks.errors.PromptError` -- never a
TypeError/KeyError/ValueError from inside (issue 12 §7: garbage RLE counts gave a traceback).
"""

from __future__ import annotations

import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.errors import PipelineError, PromptError
from tasks.formats import rle, ytvis
from tasks.labeling import prompts
from tests.fuzz.strategies import json_values, mutated

H, W, N = 8, 16, 3
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _valid_doc() -> dict:
    maps = [np.zeros((H, W), np.uint16) for _ in range(N)]
    maps[0][1:4, 14:] = 7      # across the seam
    maps[0][1:4, :2] = 7
    maps[0][5:8, 3:9] = 9
    maps[2][0:2, :] = 9        # over the pole row
    doc = ytvis.build_video(ytvis.VideoInfo("0123456789abcdef", W, H, N, 10.0), maps,
                            {7: ytvis.TrackInfo(7, "ball"), 9: ytvis.TrackInfo(9, "person")})
    doc.pop("info")
    for a in doc["annotations"]:   # only what a prompts loader reads; keeps the mutation space small
        for k in ("areas", "bboxes", "wrap_bboxes", "bfovs", "sphere_areas", "provenance"):
            a.pop(k, None)
    return json.loads(json.dumps(doc))


VALID = _valid_doc()


def _check(doc) -> None:
    try:
        p = prompts.parse(doc)
    except PromptError:
        return
    except PipelineError as exc:  # pragma: no cover - typed, but not the class the CLI promises
        raise AssertionError(f"typed but not a PromptError: {exc!r}") from exc
    # accepted: one id per pixel, ids in range, masks of the declared size
    for idm in p.frames.values():
        assert idm.shape == (p.height, p.width) and idm.dtype == np.uint16
        assert set(np.unique(idm).tolist()) - {0} <= set(p.tracks)
    assert all(1 <= t <= 65535 for t in p.tracks)


def test_the_valid_document_is_accepted():
    p = prompts.parse(VALID)
    assert p.tracks == {7: "ball", 9: "person"} and sorted(p.frames) == [0, 2]


@FUZZ
@given(mutated(VALID, max_mutations=3))
def test_mutated_prompts_documents(doc):
    _check(doc)


@FUZZ
@given(json_values)
def test_random_json_documents(doc):
    _check(doc)


@FUZZ
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_random_bytes(data):
    try:
        prompts.load_bytes(data)
    except PromptError:
        pass


rle_counts = st.one_of(st.text(max_size=24), st.lists(st.integers(-5, 200), max_size=8), json_values)


@FUZZ
@given(rle_counts, st.lists(st.integers(-2, 40), min_size=0, max_size=3))
def test_random_rle_counts_and_sizes(counts, size):
    doc = json.loads(json.dumps(VALID))
    seg = doc["annotations"][0]["segmentations"][0]
    seg["counts"] = counts
    if size != [H, W] and len(size) != 2:
        seg["size"] = size
    _check(doc)


@FUZZ
@given(st.lists(st.integers(0, H * W), min_size=1, max_size=12))
def test_rle_counts_that_cover_the_mask_decode_to_exactly_that_mask(cuts):
    """Run lengths summing to H*W are accepted and mean what they say (column-major runs)."""
    bounds = sorted({0, H * W, *cuts})
    runs = [b - a for a, b in zip(bounds, bounds[1:])]
    flat = np.zeros(H * W, bool)
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        flat[a:b] = i % 2 == 1
    expected = flat.reshape(W, H).T
    doc = json.loads(json.dumps(VALID))
    doc["annotations"] = doc["annotations"][:1]
    doc["annotations"][0]["segmentations"] = [{"size": [H, W], "counts": runs}, None, None]
    if not expected.any():
        try:
            prompts.parse(doc)
        except PromptError as exc:
            assert "empty mask" in str(exc)
        return
    p = prompts.parse(doc)
    assert ((p.frames[0] == 7) == expected).all()
    # and the compressed form of the same mask
    doc["annotations"][0]["segmentations"][0] = rle.encode(expected)
    assert ((prompts.parse(doc).frames[0] == 7) == expected).all()

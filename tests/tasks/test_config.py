import json

import pytest

from tasks.config import PipelineConfig
from tasks.errors import ConfigError


def test_defaults_are_the_methods():
    c = PipelineConfig()
    assert c.tiling.pad_ratio == 0.125 and c.tiling.tiles == 3
    assert c.propose.tile_merge_iou == 0.5 and c.verify.vote_iou == 0.5 and c.verify.min_votes == 2
    assert c.propose.min_area_px_at_2048 == 100
    assert c.refine.tau == 0.002 and c.refine.refine_hz == 5 and c.refine.reid_iou == 0.3
    assert c.video.max_width == 2048


def test_hash_is_stable_and_changes_with_any_setting():
    a, b = PipelineConfig(), PipelineConfig()
    assert a.hash == b.hash and len(a.hash) == 12
    assert a.with_overrides({"refine.tau": 0.004}).hash != a.hash
    assert a.with_overrides({"refine": {"tau": 0.002}}).hash == a.hash  # same values, same run


def test_rho_grid_and_scaled_area():
    c = PipelineConfig()
    assert c.refine_step(30) == 6 and c.refine_step(29.97) == 6 and c.refine_step(10) == 2 and c.refine_step(1) == 1
    assert c.min_area(2048, 100) == 100 and c.min_area(1024, 100) == 25
    assert c.processing_width(3840) == 2048 and c.processing_width(1024) == 1024
    assert PipelineConfig.from_dict({"video": {"width": 512}}).processing_width(3840) == 512


@pytest.mark.parametrize("bad, where", [
    ({"refine": {"tau": -1}}, "refine.tau"),
    ({"video": {"width": 1023}}, "video.width"),
    ({"verify": {"verifier": "gpt-99"}}, "verify.verifier"),
    ({"nonsense": 1}, "nonsense"),
    ({"release": {"split_ratios": [0.5, 0.5, 0.5]}}, "split_ratios"),
])
def test_bad_values_raise_config_error_naming_the_key(bad, where):
    with pytest.raises(ConfigError) as e:
        PipelineConfig.from_dict(bad)
    assert where in str(e.value)


def test_from_file_json_and_yaml_and_errors(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"refine": {"tau": 0.01}}))
    assert PipelineConfig.from_file(tmp_path / "c.json").refine.tau == 0.01
    (tmp_path / "c.yaml").write_text("qa:\n  min_track_seconds: 1.5\n")
    assert PipelineConfig.from_file(tmp_path / "c.yaml").qa.min_track_seconds == 1.5
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid"):
        PipelineConfig.from_file(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="cannot read"):
        PipelineConfig.from_file(tmp_path / "missing.json")


# -- issue 12 §9, §10 ---------------------------------------------------------------------------
def _leaves(model, prefix=""):
    """(dotted name, pydantic field) of every setting."""
    from pydantic import BaseModel

    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield from _leaves(value, prefix + name + ".")
        else:
            yield prefix + name, field, value


LEAVES = list(_leaves(PipelineConfig()))
FLOATS = [(name, value) for name, field, value in LEAVES
          if isinstance(value, float) or (isinstance(value, tuple) and value and isinstance(value[0], float))
          or "float" in str(field.annotation)]


def test_every_float_setting_is_covered():
    names = {n for n, _ in FLOATS}
    assert {"refine.tau", "release.split_ratios", "video.fps", "qa.seam_color_tol"} <= names


@pytest.mark.parametrize("name, value", FLOATS, ids=[n for n, _ in FLOATS])
@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan"), "Infinity", "NaN"])
def test_no_float_setting_takes_a_non_finite_value(name, value, bad):
    """Every float in the configuration, tuples included: NaN fails every comparison, so a NaN
    threshold silently switches its check off; Infinity is no threshold either."""
    new = [bad, 0.0, 1.0] if isinstance(value, tuple) else bad
    with pytest.raises(ConfigError, match=name.replace(".", r"\.") + r".*finite number"):
        PipelineConfig().with_overrides({name: new})


def _other_value(value):
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 4, value - 4, value * 2, value + 1]
    if isinstance(value, float):     # a setting off at 0.0 (e.g. propose.flat_textured_ratio): no scaling
        return [v for v in (value * 1.1, value * 0.9, value + 0.01, value - 0.01, 0.5) if v != value]
    return []


@pytest.mark.parametrize("name, value", [(n, v) for n, _, v in LEAVES if _other_value(v)],
                         ids=[n for n, _, v in LEAVES if _other_value(v)])
def test_every_numeric_setting_names_the_run(name, value):
    """A changed threshold is a new run hash, so committed outputs of the old value are never
    reused for it (issue 12 §10; the stage chain itself: tests/tasks/test_thresholds.py)."""
    base = PipelineConfig()
    for other in _other_value(value):
        try:
            changed = base.with_overrides({name: other})
        except ConfigError:
            continue   # out of this setting's range: try the next value
        assert changed.hash != base.hash
        return
    pytest.fail(f"no other valid value found for {name}")


def test_qa_thresholds_are_settings():
    c = PipelineConfig()
    assert (c.qa.seam_color_tol, c.qa.seam_rows_flag, c.qa.fragment_share, c.qa.max_review_crops) == (12.0, 0.05, 0.1, 50)


def test_frame_sizes_are_valid_for_every_stage():
    """Width a multiple of 4, so the height is even too (H.264 yuv420p of the preview)."""
    with pytest.raises(ConfigError, match="multiple of 4.*try 64"):
        PipelineConfig().with_overrides({"video.width": 66})
    with pytest.raises(ConfigError, match="video.max_width"):
        PipelineConfig().with_overrides({"video.max_width": 2046})
    assert PipelineConfig().processing_width(1022) == 1020          # a 1022x511 source: height 510, not 511
    assert all(PipelineConfig().processing_width(w) % 4 == 0 for w in range(64, 4100, 2))


def test_conflicting_overrides_are_a_config_error():
    with pytest.raises(ConfigError, match="conflicts"):
        PipelineConfig().with_overrides({"refine": 1, "refine.tau": 0.1})
    with pytest.raises(ConfigError, match="conflicts"):
        PipelineConfig().with_overrides({"refine.tau": 0.1, "refine": 3})
    both = PipelineConfig().with_overrides({"refine.tau": 0.1, "refine": {"reid_iou": 0.4}})
    assert (both.refine.tau, both.refine.reid_iou) == (0.1, 0.4)


def test_the_human_gates_limit_names_no_run():
    """review.gate_max_flags decides whether a person looks at finished labels, never the labels:
    turning the gate on must not name new runs (a full relabel). The default run keeps its hash,
    every other setting still names the run (test_every_numeric_setting_names_the_run)."""
    base = PipelineConfig()
    for limit in (0, 5):
        gated = base.with_overrides({"review.gate_max_flags": limit})
        assert gated.review.gate_max_flags == limit                       # the gate still reads it
        assert gated.hash == base.hash
        assert json.loads(gated.canonical_json())["review"]["gate_max_flags"] is None   # config.json
    tuned = base.with_overrides({"refine.tau": 0.004})
    assert base.with_overrides({"refine.tau": 0.004, "review.gate_max_flags": 5}).hash == tuned.hash != base.hash
    # a run recorded before the limit left the identity (config.json carries it) still loads
    old = PipelineConfig.from_dict({**json.loads(base.canonical_json()), "review": {"gate_max_flags": 3}})
    assert old.review.gate_max_flags == 3 and old.hash == base.hash

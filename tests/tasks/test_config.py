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

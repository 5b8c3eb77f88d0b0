"""Issue 12, point 1: what a configuration asks of a video is a configuration error, never a
judgement on the content (tasks/video/limits.py)."""

from __future__ import annotations

import pytest

from tasks.config import PipelineConfig
from tasks.errors import EXIT_USAGE, ConfigError
from tasks.video.limits import check_limits, config_problems, expected_frames
from tasks.video.probe import probe
from tests.support.videos import pattern_video


@pytest.fixture(scope="module")
def two_seconds(tmp_path_factory):
    return probe(pattern_video(tmp_path_factory.mktemp("lim") / "v.mp4", 128, 64, 2.0, 10))


def test_a_video_longer_than_max_seconds_is_the_configurations_problem(two_seconds):
    # the probe itself accepts the content: it is 2:1 and complete, whatever max_seconds says
    assert two_seconds.duration == pytest.approx(2.0)
    check_limits(two_seconds, PipelineConfig())
    with pytest.raises(ConfigError) as e:
        check_limits(two_seconds, PipelineConfig().with_overrides({"video.max_seconds": 1}))
    assert e.value.exit_code == EXIT_USAGE and not e.value.retryable
    assert "video.max_seconds=1" in str(e.value) and "nothing was quarantined" in str(e.value)
    check_limits(two_seconds, PipelineConfig().with_overrides({"video.max_seconds": 2.5}))


def test_an_fps_that_gives_no_frame_is_refused_with_the_lowest_that_works(two_seconds):
    with pytest.raises(ConfigError, match=r"video.fps=1e-09 gives .* at least 0.5 fps \(the video itself runs at 10 fps\)"):
        check_limits(two_seconds, PipelineConfig().with_overrides({"video.fps": 1e-9}))
    ok = PipelineConfig().with_overrides({"video.fps": 0.5})
    check_limits(two_seconds, ok)
    assert expected_frames(two_seconds, 0.5) == 1 and expected_frames(two_seconds, None) == 20


def test_every_problem_is_listed_at_once(two_seconds):
    cfg = PipelineConfig().with_overrides({"video.max_seconds": 1, "video.fps": 0.1})
    problems = config_problems(two_seconds, cfg)
    assert len(problems) == 2 and "max_seconds" in problems[0] and "video.fps=0.1" in problems[1]

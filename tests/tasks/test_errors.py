"""Each error class carries its outcome; the CLI, the pod mapping and the Airflow wrapper agree."""

import inspect

import pytest

from tasks import errors
from tasks.cli import main

CLASSES = [c for _, c in inspect.getmembers(errors, inspect.isclass)
           if issubclass(c, errors.PipelineError)]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_error_class_has_an_exit_code_and_a_consistent_retry_flag(cls):
    assert cls.exit_code in errors.EXIT_CODES
    outcome = errors.exit_outcome(cls.exit_code)
    assert outcome.retryable == cls.retryable
    assert cls.retryable == (not issubclass(cls, errors.PermanentError))
    assert outcome.outcome != "ok"


def test_the_readme_table_of_exit_codes():
    table = {c: o.outcome for c, o in errors.EXIT_CODES.items()}
    assert table == {0: "ok", 1: "retry", 2: "fail", 3: "fail", 4: "skip", 5: "fail", 6: "fail", 7: "fail"}
    assert errors.ConfigError.exit_code == 2 and errors.InputRejected.exit_code == 3
    assert errors.DuplicateVideo.exit_code == 4 and errors.QualityGateFailed.exit_code == 5
    assert errors.MissingUpstream.exit_code == 6 and errors.PermanentError.exit_code == 7
    assert errors.StoreError.exit_code == 1


def test_codes_the_cli_never_returns_are_retried():
    for code in (137, 143, -9, None):      # OOM-killed, SIGTERM, signal, container without status
        assert errors.exit_outcome(code).outcome == "retry"


def test_a_request_lists_every_problem():
    exc = errors.RequestInvalid(["a is wrong: do x", "b is wrong: do y"])
    assert exc.exit_code == 2 and not exc.retryable
    assert str(exc).splitlines()[1:] == ["  - a is wrong: do x", "  - b is wrong: do y"]


def test_cli_user_mistakes_print_one_line_and_no_traceback(tmp_path, capsys):
    assert main(["config", "--set", "refine.tua=0.004"]) == 2
    err = capsys.readouterr().err
    assert "did you mean refine.tau?" in err and "Traceback" not in err
    assert main(["config", "--set", "refine"]) == 2
    assert capsys.readouterr().err.strip() == "configuration error: --set needs KEY=VALUE, got 'refine'"
    assert main(["status", "--gt", str(tmp_path / "missing.json"), "--store", str(tmp_path / "s")]) == 7
    err = capsys.readouterr().err
    assert "missing.json" in err and "Traceback" not in err


def test_one_device_error_for_every_learned_backend():
    """A pod without the GPU it asked for fails the same way wherever the device is resolved:
    exit 2, never retried (a retry lands on the same pod), one class to catch."""
    from tasks.backends import sam2_propagator, torch_runtime

    assert torch_runtime.DeviceUnavailable is sam2_propagator.DeviceUnavailable is errors.DeviceUnavailable
    assert errors.DeviceUnavailable.exit_code == 2 and not errors.DeviceUnavailable.retryable
    assert errors.exit_outcome(errors.DeviceUnavailable.exit_code).outcome == "fail"

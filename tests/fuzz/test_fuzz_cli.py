"""Fuzz: the command line itself. Random arguments to the commands that take a person's input
(paths, keys, ids, numbers, settings) end in an exit code -- 0, or the code of a typed error --
or argparse's usage error (exit 2); never in an exception escaping ``main`` (which the
interpreter would print as a traceback; issue 12 §7).

Commands that render or label (synth, label, the heavy stages) are left out: with valid random
arguments they would do real work; their refusals are covered one by one in
tests/tasks/test_cli_errors.py.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tasks.cli import main
from tasks.errors import EXIT_CODES

values = st.one_of(
    st.sampled_from(["", "0", "-1", "nan", "inf", "1e999", "0123456789abcdef", "0123456789ab", "raw/x.mp4",
                     "raw/../../x.mp4", "raw\\x.mp4", "models/m.pt", "/etc", "/dev/null", ".", "..", "{}", "[]",
                     "refine.tau=Infinity", "refine.tau=0.01", "video.width=66", "release.split_ratios=[NaN,0,1]",
                     "verify.llm_api_key_env=LEADER360V_S3_SECRET_KEY", "a=b", "=", "é", "-x"]),
    st.text(max_size=12))
COMMANDS = {
    "config": ["--config", "--set"],
    "evaluate": ["--pred", "--gt", "--out", "--video-uid"],
    "upload": ["--key", "--uploaded-at", "--overwrite", "FILE"],
    "status": ["--gt", "--json"],
    "release": ["--config-hash", "--set"],
    "ingest": ["--key", "--set", "--force"],
    "decode": ["--video-id", "--run", "--set", "--xcom-file"],
    "review": ["--video-id", "--run", "--expires-hours"],
    "quarantine": ["list", "release", "VALUE"],
}
FLAGS = {"--overwrite", "--json", "--force"}


@st.composite
def argvs(draw):
    cmd = draw(st.sampled_from(sorted(COMMANDS)))
    argv = [cmd]
    for opt in draw(st.lists(st.sampled_from(COMMANDS[cmd]), max_size=4)):
        if opt in FLAGS or opt in ("list", "release"):
            argv.append(opt)
        elif opt in ("FILE", "VALUE"):
            argv.append(draw(values))
        else:
            argv += [opt, draw(values)]
    return argv


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(argvs())
@example(["evaluate", "--pred", "", "--gt", ""])   # an empty path crashed naming the output
@example(["status", "--gt", "\x00"])               # a NUL byte reached open()
@example(["evaluate", "--gt", "0", "--pred", "."])
def test_random_command_lines_end_in_an_exit_code(argv):
    with tempfile.TemporaryDirectory() as tmp:
        old = os.environ.get("LEADER360V_STORE")
        os.environ["LEADER360V_STORE"] = str(Path(tmp) / "store")   # never the project's ./var/store
        cwd = os.getcwd()
        os.chdir(tmp)   # relative paths in the arguments land here
        out, err = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = main(argv)
                except SystemExit as exc:   # argparse: --help or a usage error
                    code = exc.code
        finally:
            os.chdir(cwd)
            if old is None:
                os.environ.pop("LEADER360V_STORE", None)
            else:
                os.environ["LEADER360V_STORE"] = old
        assert code in EXIT_CODES, (argv, code, err.getvalue())
        assert "Traceback" not in err.getvalue()

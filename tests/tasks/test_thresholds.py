"""Issue 12 §10: no stale results after a change of thresholds.

* Every number that changes labels is a PipelineConfig field, so it takes part in the run hash:
  :func:`test_no_label_threshold_outside_the_configuration` scans the label-changing modules for
  module-level numeric constants and fails on any that is not in :data:`ALLOWED` with the reason it
  does not change labels -- a threshold added later outside the configuration fails CI.
* Changing a threshold through ``--set`` gives a new run, and every stage runs again for it
  (:func:`test_a_changed_threshold_reruns_the_stages`): nothing committed under the old value is
  reused.

``code_version`` (the manifests' ``tasks.__version__``) is provenance only: it records which
package wrote a manifest, and is deliberately not part of the run hash (the scheduler and the
pods must agree on a run's name from its configuration alone, whatever image each runs). What it
was meant to guard -- a changed number reusing old outputs -- is guarded by the two tests here.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Where the labels are made: proposals, votes, fusion, propagation, refinement, QA and export.
SCANNED = ["tasks/labeling", "tasks/stages", "tasks/backends", "tasks/geometry", "tasks/video", "tasks/formats",
           "tasks/quality", "tasks/preview.py", "tasks/label.py"]

# Numeric module constants that do not change labels, each with why. Anything else numeric at
# module level in SCANNED is a threshold and belongs in tasks/config.py.
ALLOWED: dict[str, str] = {
    # versions and formats
    "tasks/formats/ytvis.py:FORMAT_VERSION": "the release format's version number",
    "tasks/stages/decode.py:DECODER_VERSION": "version of the decoded-frames layout; a newer one re-decodes",
    # input acceptance, not labels (a rejected video has no labels)
    "tasks/stages/decode.py:_MIN_DECODED_SHARE": "a video decoding to fewer frames than this share is rejected "
                                                 "as truncated (quarantine), never labeled differently",
    "tasks/video/probe.py:_ASPECT_TOLERANCE": "how close to 2:1 a source must be to be accepted as ERP",
    "tasks/labeling/prompts.py:_MAX_PROMPT_WIDTH": "largest prompts file accepted (memory bound), not a label rule",
    "tasks/labeling/prompts.py:_MAX_LISTED": "problems listed in one error message",
    # library and numeric limits, sentinels
    "tasks/geometry/remap.py:MAX_SOURCE_SIDE": "OpenCV remap's largest source side (SHRT_MAX)",
    "tasks/geometry/remap.py:_MAX_CHANNELS": "channels remapped per OpenCV call (memory), same result",
    "tasks/geometry/perspective.py:_OUTSIDE": "sentinel coordinate that samples zero",
    "tasks/geometry/rotation.py:_ORTHO_TOL": "tolerance when validating a rotation matrix argument",
    "tasks/geometry/components.py:_MAX_POINTS": "points subsampled for a mask's bounding field of view (cost bound)",
    "tasks/backends/sam2_propagator.py:_IMG_MEAN": "SAM2's own input normalisation (its training constants)",
    "tasks/backends/sam2_propagator.py:_IMG_STD": "SAM2's own input normalisation (its training constants)",
    "tasks/backends/sam2_propagator.py:_UPSAMPLE_BATCH": "objects upsampled at once (memory), same result",
    "tasks/backends/sam2_propagator.py:_STILL_DEG": "a camera rotation under 0.01 deg (0.23 px at 8192 wide) is "
                                                    "not applied: below one pixel at every processing width",
    "tasks/backends/sam2_entities.py:_IMG_MEAN": "SAM2's own input normalisation (its training constants)",
    "tasks/backends/sam2_entities.py:_IMG_STD": "SAM2's own input normalisation (its training constants)",
    "tasks/backends/sam2_entities.py:_REF_AREA": "the unit of propose.amg_min_region_px_at_1024 (a 1024^2 tile)",
    # not labels: release timing, reviewer comments
    "tasks/stages/release.py:_PUBLISH_WAIT_FACTOR": "how long a second `release` waits for a running publisher",
    "tasks/backends/llm_verifier.py:COMMENT_MAX_CHARS": "longest reviewer comment accepted from the VLM "
                                                        "(a note for people, not a label)",
    # the method's fixed choices, not tuning thresholds
    "tasks/stages/propose.py:KEYFRAMES": "the SDR runs on frame 0 [M §1.2]; later keyframes are refine's "
                                         "(refine.keyframe_interval_s)",
    "tasks/labeling/views.py:_CROP_MARGIN": "the method's verifier crop margin, 50 px [M §1.2(d)]",
    "tasks/labeling/views.py:_BACKGROUND": "grey behind the masked verifier crop, as the method's code [M §1.2(d)]",
    # The camera-rotation estimator's internals (ORB/RANSAC/LK parameters, measured in
    # tests/bench/bench_camera_motion.py: < 0.1 deg on the real panoramas). They change labels
    # only through the rotation estimate and are not tuned per run; moving them would take a
    # parameter through every caller of estimate_rotation (flow.py, sam2_propagator.py,
    # stages/propagate.py). Listed here so that a new one still fails this test.
    **{f"tasks/geometry/camera_motion.py:{n}": "camera-rotation estimator internal (bench_camera_motion)"
       for n in ("_UNIFORM_STD", "_MIN_KEYPOINTS", "_MIN_MATCHES", "_MIN_INLIERS", "_MIN_INLIER_RATIO", "_RATIO",
                 "_RANSAC_PX", "_REFINE_PX", "_LK_MAX_POINTS", "_CUT_MAX_INLIERS", "_ORB_EDGE", "_ORB_LEVELS",
                 "_OVERDETECT", "_CELLS_ACROSS")},
}

_CONSTANT_NAME = re.compile(r"^_?[A-Z][A-Z0-9_]*$")


def _numeric(node: ast.AST) -> bool:
    """A number, a signed number, arithmetic on numbers, or a tuple/list of those."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (int, float)) and not isinstance(node.value, bool)
    if isinstance(node, ast.UnaryOp):
        return _numeric(node.operand)
    if isinstance(node, ast.BinOp):
        return _numeric(node.left) and _numeric(node.right)
    if isinstance(node, (ast.Tuple, ast.List)):
        return bool(node.elts) and all(_numeric(e) for e in node.elts)
    return False


def numeric_constants(path: Path) -> dict[str, str]:
    """``NAME -> source`` of the module-level numeric constants of one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = {}
    for node in tree.body:
        targets, value = [], None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        for t in targets:
            if isinstance(t, ast.Name) and _CONSTANT_NAME.match(t.id) and _numeric(value):
                found[t.id] = ast.unparse(node).strip()
    return found


def _files() -> list[Path]:
    out = []
    for entry in SCANNED:
        p = REPO / entry
        out += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return out


def test_no_label_threshold_outside_the_configuration():
    offenders = []
    for path in _files():
        rel = path.relative_to(REPO).as_posix()
        for name, src in numeric_constants(path).items():
            if f"{rel}:{name}" not in ALLOWED:
                offenders.append(f"{rel}: {src}")
    assert not offenders, (
        "numeric module constants in label-making code: a threshold that changes labels belongs in "
        "PipelineConfig (tasks/config.py, with its source in a comment) so that it names the run; one that "
        "does not goes in ALLOWED in this test with the reason:\n  " + "\n  ".join(offenders))


def test_the_scanner_finds_what_it_must(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("_A = 0.3\nB: float = -2\nC = (1, 2.5)\nD = 4 * 1024\n_e = 1\nF = 'x'\nG = True\n"
                 "def f():\n    H = 0.5\n")
    assert set(numeric_constants(f)) == {"_A", "B", "C", "D"}


def test_the_allow_list_is_current():
    """An entry whose constant is gone (moved into the configuration) is removed from the list."""
    present = {f"{p.relative_to(REPO).as_posix()}:{n}" for p in _files() for n in numeric_constants(p)}
    stale = sorted(e for e in set(ALLOWED) - present if (REPO / e.split(":")[0]).is_file())
    assert not stale, f"stale ALLOWED entries: {stale}"


# -- a changed threshold re-runs the stages -----------------------------------------------------
def _chain(capsys, store: str, key: str, *sets: str) -> tuple[str, str, dict[str, dict]]:
    """ingest .. qa through the CLI, as the DAG's pods run them; (video id, run, stage -> result)."""
    from tasks.cli import main
    from tasks.stages.runner import ORDER

    assert main(["ingest", "--key", key, "--store", store, *sets]) == 0
    first = json.loads(capsys.readouterr().out)
    results = {"ingest": first}
    for stage in ORDER[1:ORDER.index("qa") + 1]:
        assert main([stage, "--video-id", first["video_id"], "--store", store, *sets]) == 0, stage
        results[stage] = json.loads(capsys.readouterr().out)
    return first["video_id"], first["run"], results


@pytest.mark.slow
def test_a_changed_threshold_reruns_the_stages(tiny_clip, tmp_path, capsys):
    from tasks import layout
    from tasks.cli import main
    from tasks.storage import open_store

    store = str(tmp_path / "store")
    assert main(["upload", str(tiny_clip / "clip.mp4"), "--key", "raw/clip.mp4", "--store", store]) == 0
    capsys.readouterr()
    vid, run_a, first = _chain(capsys, store, "raw/clip.mp4")
    assert all(r["status"] == "done" for s, r in first.items() if s != "ingest")
    # the same configuration again: everything committed is reused
    _, again, second = _chain(capsys, store, "raw/clip.mp4")
    assert again == run_a and all(r["status"] == "skipped" for r in second.values())
    s = open_store(store)
    before = {st: s.get_bytes(layout.manifest_key(vid, run_a, st)) for st in first if st != "ingest"}

    # one threshold that used to be a module constant of qa.py, changed through --set
    _, run_b, third = _chain(capsys, store, "raw/clip.mp4", "--set", "qa.seam_color_tol=40")
    assert run_b != run_a
    assert all(r["status"] == "done" for st, r in third.items() if st != "ingest"), \
        {st: r["status"] for st, r in third.items()}
    old_prefix = layout.run_prefix(vid, run_a)
    for st in third:
        if st == "ingest":
            continue
        manifest = s.get_json(layout.manifest_key(vid, run_b, st))
        assert manifest["config_hash"] == run_b
        assert not [k for k in manifest["keys"].values() if k.startswith(old_prefix)], f"{st} reuses run {run_a}"
    qa = s.get_json(layout.manifest_key(vid, run_b, "qa"))
    assert s.get_json(qa["keys"]["annotations"])["videos"][0]["config_hash"] == run_b
    # and the old run is untouched
    assert before == {st: s.get_bytes(layout.manifest_key(vid, run_a, st)) for st in before}

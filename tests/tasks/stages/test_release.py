import copy
import hashlib
import shutil

import pytest

from tasks import layout
from tasks.config import PipelineConfig
from tasks.errors import QualityGateFailed
from tasks.stages import release
from tasks.stages.runner import output_key
from tasks.storage import LocalStore


@pytest.fixture
def store(labeled_tiny, tmp_path):
    """A private copy of the labeled store (tests here publish and corrupt)."""
    src, vid, run, _ = labeled_tiny
    shutil.copytree(src.root, tmp_path / "store")
    return LocalStore(tmp_path / "store"), vid, run


def test_publish_writes_a_complete_checksummed_release(store):
    s, vid, run = store
    out = release.release(s, PipelineConfig())
    assert out["version"] == 1 and out["videos"] == 1
    p = layout.release_prefix(1)
    manifest = s.get_json(p + "manifest.json")
    assert {"annotations.json", "splits.json", "gx_report.json", "DATASET_CARD.md"} <= set(manifest["files"])
    assert f"JPEGImages/{vid}/00000.jpg" in manifest["files"] and f"Annotations/{vid}/00015.png" in manifest["files"]
    for rel, meta in manifest["files"].items():
        assert hashlib.sha256(s.get_bytes(p + rel)).hexdigest() == meta["sha256"]
    assert s.exists(p + layout.MANIFEST) and not s.exists(p + ".claim")
    assert s.get_json("releases/latest.json")["version"] == 1
    assert not list(s.list(release.CANDIDATES))
    # the gate's Data Docs, rendered by GX's site builder, beside gx_report.json and checksummed
    report = s.get_json(p + "gx_report.json")
    assert report["data_docs"] == "data_docs/index.html" and report["summary"].endswith("expectations passed")
    assert "data_docs/index.html" in manifest["files"]
    index = s.get_bytes(p + "data_docs/index.html").decode()
    assert "Great Expectations" in index and f"video_{vid}" in index
    pages = [f for f in manifest["files"] if f.startswith("data_docs/validations/")]
    assert len(pages) == len(report["suites"][0]["tables"]) + len(report["suites"][1]["tables"])
    assert not any(f.endswith(".gif") for f in manifest["files"])      # GX's tutorial GIFs stay out
    # the card says which configuration each video came from, and why
    card = s.get_bytes(p + "DATASET_CARD.md").decode()
    assert f"| {vid} | `raw/tiny.mp4` | {run} |" in card and "its only configuration that passed" in card
    assert manifest["videos"][0]["run"] == run and manifest["videos"][0]["key"] == "raw/tiny.mp4"
    # the same videos with the same configurations are not published twice: the same version is
    # named, marked unchanged (issue 12: run twice, it published v1..v5 with identical content)
    again = release.release(s, PipelineConfig())
    assert again["unchanged"] is True and {k: again[k] for k in ("version", "prefix", "files", "videos", "objects")} \
        == {k: out[k] for k in ("version", "prefix", "files", "videos", "objects")}
    assert release.published_versions(s) == [1] and not list(s.list(release.CANDIDATES))
    # the release DAG's candidate task skips on it (a NothingToRelease that names the version)
    with pytest.raises(release.Unchanged, match="release v1 already holds exactly these 1 video") as e:
        release.prepare_candidate(s, PipelineConfig())
    assert isinstance(e.value, release.NothingToRelease) and e.value.version == 1


def test_a_release_from_several_runs_takes_the_newest_configuration_that_passed(store):
    """A backfill with new thresholds validates a second configuration of the same video: the
    next release holds that video once, with the newer configuration, and the card says why."""
    from tasks.stages.runner import run_chain

    s, vid, run = store
    release.release(s, PipelineConfig())
    newer = PipelineConfig().with_overrides({"qa.preview_width": 512})
    run_chain(store=s, config=newer, key="raw/tiny.mp4", progress=False)
    out = release.release(s, PipelineConfig())
    assert out["version"] == 2 and out["videos"] == 1 and out["runs"] == [newer.hash]
    m = s.get_json(layout.release_prefix(2) + "manifest.json")
    assert [v["run"] for v in m["videos"]] == [newer.hash]
    card = s.get_bytes(layout.release_prefix(2) + "DATASET_CARD.md").decode()
    assert f"| {vid} | `raw/tiny.mp4` | {newer.hash} |" in card
    assert "the newest of 2 configurations that passed its quality suite" in card and f"older: {run}" in card
    # asking for the older configuration by hash still works, and says so
    out = release.release(s, PipelineConfig(), config_hash=run)
    card = s.get_bytes(layout.release_prefix(3) + "DATASET_CARD.md").decode()
    assert out["runs"] == [run] and f"configuration {run} was requested" in card


def test_the_labels_digest_ignores_only_the_creation_time(store):
    s, vid, run = store
    doc = s.get_json(output_key(s, s.get_json(layout.manifest_key(vid, run, "qa")), "annotations"))
    later = copy.deepcopy(doc)
    later["info"]["date_created"] = "2099-01-01T00:00:00+00:00"
    assert release.labels_digest(later) == release.labels_digest(doc)
    later["annotations"][0]["track_id"] += 1000
    assert release.labels_digest(later) != release.labels_digest(doc)


def test_choose_run_rule():
    a = {"run": "aaaaaaaaaaaa", "finished": "2026-11-24T02:00:00+00:00"}
    b = {"run": "bbbbbbbbbbbb", "finished": "2026-11-25T02:00:00+00:00"}
    c = {"run": "cccccccccccc", "finished": "2026-11-25T02:00:00+00:00"}
    assert release.choose_run([], None) == (None, "")
    assert release.choose_run([b, a], None)[0] is b
    assert release.choose_run([c, b, a], None)[0] is c            # same second: the larger hash, deterministically
    assert release.choose_run([b, a], "aaaaaaaaaaaa")[0] is a
    assert release.choose_run([b], "aaaaaaaaaaaa") == (None, "")


@pytest.mark.parametrize("corrupt, expectation", [
    ("area", "expect_column_pair_values_to_be_equal"),
    ("overlap", "expect_column_values_to_be_between"),
    ("category", "expect_column_values_to_be_in_set"),
    ("missing_frame", "expect_column_values_to_be_in_set"),
])
def test_quality_gate_failure_publishes_nothing(store, corrupt, expectation):
    s, vid, run = store
    qa = s.get_json(layout.manifest_key(vid, run, "qa"))
    key = output_key(s, qa, "annotations")
    doc = s.get_json(key)
    bad = copy.deepcopy(doc)
    a0, a1 = bad["annotations"][0], bad["annotations"][1]
    f = next(i for i, (x, y) in enumerate(zip(a0["segmentations"], a1["segmentations"])) if x and y)
    if corrupt == "area":
        a0["areas"][f] += 7
    elif corrupt == "overlap":
        a1["segmentations"][f] = a0["segmentations"][f]
        a1["areas"][f] = a0["areas"][f]
    elif corrupt == "category":
        a0["category_id"] = 99999
        bad["categories"].append({"id": 99999, "name": "flux capacitor", "isthing": 1})
    elif corrupt == "missing_frame":
        for a in bad["annotations"]:
            a["segmentations"][f] = None
            a["areas"][f] = None
    s.put_json(key, bad)
    with pytest.raises(QualityGateFailed) as e:
        release.release(s, PipelineConfig())
    assert expectation in str(e.value) and "nothing was published" in str(e.value)
    assert e.value.failures
    assert release.published_versions(s) == [] and not s.exists("releases/latest.json")


def test_nothing_ready_is_a_clear_error(tmp_path):
    with pytest.raises(release.NothingToRelease, match="no video is ready"):
        release.prepare_candidate(LocalStore(tmp_path / "s"), PipelineConfig())


def test_splits_are_deterministic():
    assert release.split_of("ab" * 8, (0.8, 0.1, 0.1)) == release.split_of("ab" * 8, (0.8, 0.1, 0.1))
    splits = {release.split_of(f"{i:016x}", (0.8, 0.1, 0.1)) for i in range(200)}
    assert splits == {"train", "val", "test"}


def test_a_published_video_leaves_only_when_its_labels_were_rebuilt_and_failed(store):
    """Issue 12: a later quarantine record does not drop a published video; its labels rebuilt
    and failing their suite do (a failed validate never commits, the re-run removed the old one)."""
    from tasks.errors import InputRejected
    from tasks.stages.runner import execute, quarantine

    s, vid, run = store
    assert release.release(s, PipelineConfig())["version"] == 1
    quarantine(s, vid, "raw/tiny.mp4", "decode", InputRejected("truncated", "only 3 of 16 frames"), run)
    assert [r["video_id"] for r in release.ready_videos(s)] == [vid]
    s.delete(layout.quarantine_key(vid))
    qa = s.get_json(layout.manifest_key(vid, run, "qa"))
    key = output_key(s, qa, "annotations")
    doc = s.get_json(key)
    a = doc["annotations"][0]
    a["areas"][next(i for i, x in enumerate(a["segmentations"]) if x)] += 7
    s.put_json(key, doc)
    with pytest.raises(QualityGateFailed):
        execute("validate", store=s, config=PipelineConfig(), video_id=vid, force=True)
    assert release.ready_videos(s) == []
    with pytest.raises(release.NothingToRelease, match="no video is ready"):
        release.release(s, PipelineConfig())
    assert release.published_versions(s) == [1]

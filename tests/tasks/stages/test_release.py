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
    assert release.release(s, PipelineConfig())["version"] == 2   # the next one is v2


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

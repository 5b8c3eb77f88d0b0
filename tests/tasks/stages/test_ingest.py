import pytest

from tasks import layout
from tasks.config import PipelineConfig
from tasks.errors import DuplicateVideo, InputRejected, PermanentError
from tasks.stages.runner import execute
from tasks.storage import LocalStore
from tests.support.videos import pattern_video, stereo_top_bottom, truncate


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path / "store")


def ingest(store, key, **kw):
    return execute("ingest", store=store, config=PipelineConfig(), params={"key": key}, **kw)


def test_ingest_records_source_and_is_idempotent(store, tmp_path):
    store.put_file("raw/2026/ü-vidéo 360°.mp4", pattern_video(tmp_path / "a.mp4"))
    r = ingest(store, "raw/2026/ü-vidéo 360°.mp4")
    assert r.status == "done" and len(r.video_id) == 16
    src = store.get_json(layout.source_key(r.video_id))
    assert src["key"] == "raw/2026/ü-vidéo 360°.mp4" and src["probe"]["layout"] == "mono"
    assert ingest(store, "raw/2026/ü-vidéo 360°.mp4").status == "skipped"


def test_duplicate_upload_is_recognised_not_labeled_twice(store, tmp_path):
    v = pattern_video(tmp_path / "a.mp4")
    store.put_file("raw/first.mp4", v)
    store.put_file("raw/again/copy.mp4", v)
    first = ingest(store, "raw/first.mp4")
    with pytest.raises(DuplicateVideo, match="same content as 'raw/first.mp4'") as e:
        ingest(store, "raw/again/copy.mp4")
    assert e.value.video_id == first.video_id
    assert store.get_json(layout.aliases_key(first.video_id)) == ["raw/again/copy.mp4"]
    assert not store.exists(layout.quarantine_key(first.video_id))


def text_file(d):
    (d / "x.mp4").write_text("hello")
    return d / "x.mp4"


@pytest.mark.parametrize("make, reason", [
    (text_file, "not_a_video"),
    (lambda d: truncate(pattern_video(d / "g.mp4", seconds=3), d / "t.mp4"), "truncated"),
    (lambda d: pattern_video(d / "w.mp4", 320, 128), "not_equirectangular"),
])
def test_bad_inputs_are_quarantined_with_their_reason(store, tmp_path, make, reason):
    store.put_file("raw/bad.mp4", make(tmp_path))
    with pytest.raises(InputRejected) as e:
        ingest(store, "raw/bad.mp4")
    assert e.value.reason == reason
    records = [store.get_json(i.key) for i in store.list(layout.QUARANTINE)]
    assert len(records) == 1 and records[0]["reason"] == reason and records[0]["key"] == "raw/bad.mp4"
    assert records[0]["message"] == e.value.message
    assert not any(store.list(layout.VIDEOS))  # nothing else was written for it


def test_stereo_upload_is_accepted(store, tmp_path):
    store.put_file("raw/stereo.mp4", stereo_top_bottom(tmp_path / "s.mp4"))
    r = ingest(store, "raw/stereo.mp4")
    assert r.stats["layout"] == "top-bottom"


def test_missing_key_is_a_clear_error(store):
    with pytest.raises(PermanentError, match="no uploaded object 'raw/nope.mp4'"):
        ingest(store, "raw/nope.mp4")

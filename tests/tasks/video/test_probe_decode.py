import numpy as np
import pytest

from tasks.errors import InputRejected
from tasks.video.frames import Mp4Writer, iter_frames
from tasks.video.probe import probe
from tests.support.videos import ffmpeg, pattern_video, stereo_top_bottom, truncate


def reason(path, **kw):
    with pytest.raises(InputRejected) as e:
        probe(path, **kw)
    assert e.value.message  # something a person can act on
    return e.value.reason


def test_accepts_a_mono_erp_video(tmp_path):
    p = probe(pattern_video(tmp_path / "ok.mp4", 256, 128, 1.0, 10))
    assert (p.width, p.height, p.n_frames, p.layout) == (256, 128, 10, "mono")
    assert p.fps == pytest.approx(10)


def test_rejections_have_reasons(tmp_path):
    (tmp_path / "notes.mp4").write_text("definitely not a video")
    assert reason(tmp_path / "notes.mp4") == "not_a_video"
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert reason(tmp_path / "empty.mp4") == "not_a_video"
    import cv2

    cv2.imwrite(str(tmp_path / "pano.jpg"), np.zeros((64, 128, 3), np.uint8))
    assert reason(tmp_path / "pano.jpg") == "still_image"
    good = pattern_video(tmp_path / "good.mp4", 256, 128, 3.0, 10)
    assert reason(truncate(good, tmp_path / "cut_end.mp4")) == "truncated"          # moov at the end: lost
    fast = pattern_video(tmp_path / "fast.mp4", 256, 128, 3.0, 10, faststart=True)
    assert reason(truncate(fast, tmp_path / "cut_fast.mp4")) == "truncated"         # moov first: frames missing
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=256x128:rate=10", "-frames:v", "0", "-c:v", "libx264",
           str(tmp_path / "zero.mp4"))
    assert reason(tmp_path / "zero.mp4") == "no_frames"
    assert reason(pattern_video(tmp_path / "wide.mp4", 320, 128)) == "not_equirectangular"


def damaged_mjpeg(path, frames: int = 20, damaged: range = range(2, 17)):
    """A 2:1 MJPEG mp4 whose container is whole (ffprobe counts every packet) but whose frames in
    ``damaged`` hold no JPEG data: the stream's own bytes are broken."""
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=128x64:rate=10", "-frames:v", str(frames), "-c:v", "mjpeg",
           "-q:v", "5", str(path))
    data = bytearray(path.read_bytes())
    soi = [i for i in range(len(data) - 2) if data[i:i + 3] == b"\xff\xd8\xff"]
    assert len(soi) == frames
    for i in damaged:
        data[soi[i]:soi[i] + 400] = bytes(400)
    path.write_bytes(bytes(data))
    return path


def test_a_damaged_stream_is_rejected_as_content_not_retried(tmp_path):
    """ffmpeg gives up past 2/3 undecodable frames (exit 69): that is the content's fault (reason
    'damaged', quarantined), not 'an error, a retry may help' (exit 1) as before."""
    path = damaged_mjpeg(tmp_path / "bad.mp4")
    p = probe(path)                      # the container itself is whole
    assert p.n_frames == 20
    with pytest.raises(InputRejected) as e:
        list(iter_frames(path, p, width=128))
    assert e.value.reason == "damaged" and "decoded 5 of 20 frames" in e.value.message
    assert e.value.exit_code == 3 and not e.value.retryable


def test_square_video_without_metadata_is_not_read_as_stereo(tmp_path):
    with pytest.raises(InputRejected, match="spherical stereo metadata") as e:
        probe(pattern_video(tmp_path / "sq.mp4", 256, 256))
    assert e.value.reason == "not_equirectangular"


def test_top_bottom_stereo_uses_the_top_eye(tmp_path):
    path = stereo_top_bottom(tmp_path / "stereo.mp4", eye_width=256)
    p = probe(path)
    assert p.layout == "top-bottom" and p.spherical and (p.eye_width, p.eye_height) == (256, 128)
    frames = list(iter_frames(path, p, width=256))
    assert len(frames) == 10 and frames[0].shape == (128, 256, 3)
    # the bottom eye is solid red; the top eye is the test pattern
    red = (frames[0][..., 0] > 200) & (frames[0][..., 1] < 50) & (frames[0][..., 2] < 50)
    assert red.mean() < 0.2


def test_real_stereo_video_from_shared_data(shared_data):
    path = shared_data / "erp_video" / "gvr_congo_stereo_topbottom_1920x1080_10s.mp4"
    p = probe(path)
    assert p.layout == "top-bottom" and p.spherical and p.n_frames == 300
    it = iter_frames(path, p, width=512, fps=2.0)
    first = next(it)
    assert first.shape == (256, 512, 3)
    it.close()


def test_mp4_writer_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (64, 128, 3), dtype=np.uint8) for _ in range(5)]
    with Mp4Writer(tmp_path / "o.mp4", 128, 64, 5.0) as w:
        for f in frames:
            w.write(f)
    p = probe(tmp_path / "o.mp4")
    assert (p.width, p.height, p.n_frames) == (128, 64, 5)
    with pytest.raises(ValueError):
        with Mp4Writer(tmp_path / "bad.mp4", 128, 64, 5.0) as w:
            w.write(np.zeros((10, 10, 3), np.uint8))
    assert not (tmp_path / "bad.mp4").exists()  # nothing half-written left behind

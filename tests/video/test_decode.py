"""Lazy PyAV decoding: sampling by presentation time, VFR, rotation, scene cuts, bad files."""

from __future__ import annotations

import os
import types
from fractions import Fraction

import numpy as np
import pytest

from regionsearch.errors import InvalidImageError, InvalidVideoError
from regionsearch.testing.clips import clip_spec, encode_video, make_clip, write_mp4
from regionsearch.video.decode import file_sha256, probe_video, sample_frames


def _write(path, frames, pts=None, time_base=None, rate=8, rotation=None):
    """Encode HWC uint8 frames as H.264 mp4; ``pts`` in ``time_base`` units (VFR) if given."""
    return encode_video(path, frames, pts=pts, time_base=time_base, rate=rate, rotation=rotation)


@pytest.fixture(scope="module")
def clip8(tmp_path_factory):
    spec = clip_spec(21, "slow", n_frames=16, fps=8.0)
    path = write_mp4(spec, tmp_path_factory.mktemp("v") / "c.mp4")
    return spec, path


def test_probe_reads_the_header(clip8):
    spec, path = clip8
    info = probe_video(path)
    assert (info.width, info.height, info.fps, info.n_frames, info.rotation) == (256, 256, 8.0, 16, 0)
    assert info.duration_s == pytest.approx(2.0)
    assert info.size_bytes == os.path.getsize(path) and info.codec == "h264"
    assert len(file_sha256(str(path))) == 64


def test_sampling_keeps_the_first_frame_of_each_slot_lazily(clip8):
    _, path = clip8
    gen = sample_frames(path, 2.0)
    assert isinstance(gen, types.GeneratorType)
    got = [(f.index, f.t) for f in gen]
    assert got == [(0, 0.0), (4, 0.5), (8, 1.0), (12, 1.5)]
    every = list(sample_frames(path, None))
    assert [f.index for f in every] == list(range(16))
    assert [f.cut for f in every] == [True] + [False] * 15
    assert [f.index for f in sample_frames(path, 2.0, max_frames=2)] == [0, 4]


def test_variable_frame_rate_uses_real_timestamps(tmp_path):
    clip = make_clip(22, "slow", n_frames=12)
    pts_ms = [0, 100, 150, 700, 800, 1400, 1450, 1500, 2100, 2600, 2650, 3300]
    path = _write(tmp_path / "vfr.mp4", list(clip.frames), pts=pts_ms, time_base=Fraction(1, 1000), rate=10)
    frames = list(sample_frames(path, 2.0))
    times = [f.t for f in frames]
    expected, last = [], -1
    for t in pts_ms:  # brute force: first frame of every 0.5 s slot
        if int(t / 1000 / 0.5) > last:
            expected.append(t / 1000)
            last = int(t / 1000 / 0.5)
    assert times == pytest.approx(expected, abs=1e-3)
    assert [f.index for f in frames] == [pts_ms.index(int(round(t * 1000))) for t in expected]


def test_rotation_is_applied(tmp_path):
    img = np.zeros((32, 64, 3), np.uint8)
    img[:8, :8] = 255  # a white corner, top left
    path = _write(tmp_path / "rot.mp4", [img] * 3, rotation=90)
    info = probe_video(path)
    assert (info.width, info.height, info.rotation) == (32, 64, 90)
    frame = next(iter(sample_frames(path, None)))
    assert frame.image.shape == (64, 32, 3)
    np.testing.assert_allclose(frame.image.astype(float), np.rot90(img, 1).astype(float), atol=40)


def test_scene_cut_is_detected_at_the_boundary_only(tmp_path):
    a, b = make_clip(23, "fast", n_frames=8), make_clip(24, "slow", n_frames=8)
    path = _write(tmp_path / "cut.mp4", list(a.frames) + list(b.frames))
    cuts = [f.index for f in sample_frames(path, None) if f.cut]
    assert cuts == [0, 8]
    # sampled at 2 fps of an 8 fps video: the frame right after the cut is sampled too
    assert [(f.index, f.cut) for f in sample_frames(path, 1.0)] == [(0, True), (8, True)]


def _audio_only(path):
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        samples = np.zeros((1, 1024), np.float32)
        for i in range(8):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_bad_files_raise_invalid_video_error_with_a_reason(tmp_path, clip8):
    _, good = clip8
    data = good.read_bytes()
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "half.mp4").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.mp4").write_text("hello, not a video\n" * 20)
    _audio_only(tmp_path / "audio.m4a")
    cases = {
        "empty.mp4": "empty file",
        "half.mp4": "truncated or corrupt video",
        "text.mp4": "not a video",
        "audio.m4a": "no video stream (audio only)",
        "missing.mp4": "file not found",
    }
    for name, reason in cases.items():
        with pytest.raises(InvalidVideoError, match=reason.replace("(", r"\(").replace(")", r"\)")):
            list(sample_frames(tmp_path / name))
    with pytest.raises(InvalidVideoError, match=r"video too large \(256x256"):
        probe_video(good, max_pixels=256 * 255)
    assert issubclass(InvalidVideoError, InvalidImageError)  # jobs record it like a bad image


def test_truncated_stream_with_header_first_is_reported(tmp_path, clip8):
    """A file whose header (moov) comes first but whose frame data is cut off."""
    import av

    _, good = clip8
    fast = tmp_path / "faststart.mp4"
    with av.open(str(good)) as src, av.open(str(fast), "w", options={"movflags": "faststart"}) as dst:
        s_in = src.streams.video[0]
        s_out = dst.add_stream_from_template(s_in)
        for packet in src.demux(s_in):
            if packet.dts is None:
                continue
            packet.stream = s_out
            dst.mux(packet)
    data = fast.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(InvalidVideoError, match="truncated"):
        list(sample_frames(cut, None))

"""Random access to decoded frames by seeking (``FrameSeeker``), checked against the linear decode
(``sample_frames`` at every frame) on H.264 and MPEG-4 part 2 clips, constant and variable frame
rate, with short and long keyframe intervals, in random orders."""

from __future__ import annotations


import numpy as np
import pytest

from regionsearch.errors import InvalidVideoError
from regionsearch.testing.clips import clip_spec, encode_video, iter_frames
from regionsearch.video.decode import FrameSeeker, sample_frames


def _encode(path, frames, codec="libx264", gop=None, pts=None, rate=10):
    return encode_video(path, frames, codec=codec, gop=gop, pts=pts, rate=rate)


def _frames(seed, n, size=96):
    return [img for img, _ in iter_frames(clip_spec(seed, "fast", n_frames=n, fps=10.0, size=size))]


@pytest.mark.parametrize("codec,gop,seed", [("libx264", None, 31), ("libx264", 6, 32), ("mpeg4", 5, 33),
                                            ("mpeg4", 12, 34)])
def test_every_frame_in_random_order_matches_the_linear_decode(tmp_path, codec, gop, seed):
    path = _encode(tmp_path / "c.mp4", _frames(seed, 30), codec, gop)
    linear = list(sample_frames(path, None))
    seeker = FrameSeeker(path)
    assert seeker.n_frames == len(linear) == 30
    order = np.random.default_rng(seed).permutation(30).tolist() + list(range(30))  # jumps, then a play-through
    for i in order:
        np.testing.assert_array_equal(seeker.read(i), linear[i].image, err_msg=f"frame {i}")
        assert seeker.time(i) == pytest.approx(linear[i].t, abs=1e-6)
    seeker.close()


def test_variable_frame_rate_counts_frames_not_seconds(tmp_path):
    pts = [0, 100, 150, 700, 800, 1400, 1450, 1500, 2100, 2600, 2650, 3300]
    path = _encode(tmp_path / "vfr.mp4", _frames(35, len(pts)), "mpeg4", 4, pts=pts)
    linear = list(sample_frames(path, None))
    seeker = FrameSeeker(path)
    for i in (11, 3, 7, 0, 8, 9, 2):
        np.testing.assert_array_equal(seeker.read(i), linear[i].image)
        assert seeker.time(i) == pytest.approx(pts[i] / 1000, abs=1e-3)


def test_out_of_range_and_bad_files(tmp_path):
    path = _encode(tmp_path / "c.mp4", _frames(36, 5), "mpeg4", 2)
    seeker = FrameSeeker(path)
    for bad in (-1, 5, 10**6):
        with pytest.raises(InvalidVideoError, match="has no frame"):
            seeker.read(bad)
    (tmp_path / "x.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 100)
    with pytest.raises(InvalidVideoError):
        FrameSeeker(tmp_path / "x.mp4")

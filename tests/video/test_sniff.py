"""Which files indexing treats as videos: container magic bytes first, then the extension."""

from __future__ import annotations

import io

from PIL import Image

from regionsearch.testing.clips import clip_spec, write_mp4
from regionsearch.video.decode import is_video_file


def test_videos_by_content_then_by_extension(tmp_path):
    mp4 = write_mp4(clip_spec(5, "slow", n_frames=2, size=64), tmp_path / "clip.mp4")
    disguised = tmp_path / "clip.png"
    disguised.write_bytes(mp4.read_bytes())  # a video with an image's name is still a video
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, format="GIF")  # starts with 'G' (0x47) like MPEG-TS
    (tmp_path / "a.gif").write_bytes(gif.getvalue())
    (tmp_path / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64)  # still image brand
    (tmp_path / "broken.mp4").write_bytes(b"")  # an empty .mp4 is reported as a bad video
    (tmp_path / "notes.webm").write_text("text")
    ts = bytearray(376)
    ts[0] = ts[188] = 0x47
    (tmp_path / "stream.bin").write_bytes(bytes(ts))
    (tmp_path / "image.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 40)
    want = {"clip.mp4": True, "clip.png": True, "a.gif": False, "photo.heic": False, "broken.mp4": True,
            "notes.webm": True, "stream.bin": True, "image.jpg": False, "missing.png": False, "missing.mov": True}
    assert {name: is_video_file(str(tmp_path / name)) for name in want} == want
    assert not is_video_file(str(tmp_path / "missing.mov"), extensions=(".mp4",))
    import os

    os.mkfifo(tmp_path / "pipe.jpg")  # never opened (that would block): decided by its name
    assert not is_video_file(str(tmp_path / "pipe.jpg")) and os.path.exists(tmp_path / "pipe.jpg")

"""A hostile corpus: every kind of bad or awkward input file the indexer must survive.

``write_hostile_corpus(folder)`` returns ``{path: expectation}`` where the expectation is
``"ok"`` (must be indexed; awkward but valid) or a substring of the recorded failure reason.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

#: pixel limit to configure when indexing this corpus (the "bomb" exceeds it)
MAX_PIXELS = 4_000_000


def _scene(seed: int, size: tuple[int, int] = (96, 128)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h, w = size
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[:] = rng.integers(60, 120, 3)
    y0, x0 = h // 4, w // 4
    img[y0:y0 + h // 2, x0:x0 + w // 2] = rng.integers(150, 255, 3)
    return img


def _png(img, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _write_special_files(root: Path, exp: dict[str, str]) -> None:
    """A FIFO, symlink loops (file and directory), a dangling link, a nested image and a non-image
    extension, with their expected outcomes in ``exp``."""
    from PIL import Image

    fifo = root / "fifo.jpg"
    if hasattr(os, "mkfifo"):
        os.mkfifo(fifo)
        exp[str(fifo)] = "not a regular file"
    os.symlink("loop_b.jpg", root / "loop_a.jpg")
    os.symlink("loop_a.jpg", root / "loop_b.jpg")
    exp[str(root / "loop_a.jpg")] = "symlink loop"
    exp[str(root / "loop_b.jpg")] = "symlink loop"
    os.symlink("does_not_exist.png", root / "dangling.png")
    exp[str(root / "dangling.png")] = "not found"
    sub = root / "sub"
    sub.mkdir()
    (sub / "nested.png").write_bytes(_png(Image.fromarray(_scene(6))))
    exp[str(sub / "nested.png")] = "ok"
    os.symlink("..", sub / "dir_loop")  # a directory symlink loop: must not recurse forever
    (root / "notes.txt").write_text("ignored: unknown extension")


def write_hostile_corpus(folder: str | os.PathLike[str]) -> dict[str, str]:
    from PIL import Image

    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    exp: dict[str, str] = {}

    def put(name: str, data: bytes, expectation: str) -> Path:
        p = root / name
        p.write_bytes(data)
        exp[str(p)] = expectation
        return p

    rgb = Image.fromarray(_scene(1))
    jpeg = io.BytesIO()
    rgb.save(jpeg, format="JPEG", quality=90)
    good_png = _png(rgb)

    put("good.png", good_png, "ok")
    put("good.jpg", jpeg.getvalue(), "ok")
    put("zero.jpg", b"", "empty file")
    put("truncated.jpg", jpeg.getvalue()[: len(jpeg.getvalue()) // 2], "truncated")
    put("truncated.png", good_png[: len(good_png) // 2], "truncated")
    put("not_an_image.png", b"this is a text file pretending to be a PNG\n" * 20, "not an image")
    put("bomb.png", _png(Image.new("1", (2500, 2500))), "too large")
    cmyk = io.BytesIO()
    rgb.convert("CMYK").save(cmyk, format="JPEG")
    put("cmyk.jpg", cmyk.getvalue(), "ok")
    sixteen = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    put("sixteen_bit.png", _png(Image.fromarray(sixteen)), "ok")
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    put("palette.png", _png(palette, transparency=0), "ok")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.fromarray((np.arange(96 * 128).reshape(96, 128) % 255).astype(np.uint8)))
    put("alpha.png", _png(rgba), "ok")
    put("gray.png", _png(rgb.convert("L")), "ok")
    rotated = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    rgb.save(rotated, format="JPEG", exif=exif)
    put("exif_rotated.jpg", rotated.getvalue(), "ok")
    frames = [Image.fromarray(_scene(s)) for s in (2, 3, 4)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    put("animated.gif", gif.getvalue(), "ok")
    webp = io.BytesIO()
    frames[0].save(webp, format="WEBP", save_all=True, append_images=frames[1:], duration=100)
    put("animated.webp", webp.getvalue(), "ok")
    put("ünïcødé 图像.png", _png(Image.fromarray(_scene(7))), "ok")
    raw = os.path.join(os.fsencode(root), b"latin1_\xe9t\xe9.png")
    with open(raw, "wb") as fh:
        fh.write(_png(Image.fromarray(_scene(5))))
    exp[os.fsdecode(raw)] = "ok"

    _write_special_files(root, exp)
    return exp

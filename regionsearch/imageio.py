"""Reading images from disk safely: every way a file can be bad becomes an
:class:`~regionsearch.errors.InvalidImageError` with a reason, never a crash.

Output images are ``HWC uint8 RGB``, EXIF-rotated upright, first frame of animations.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import urllib.parse
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .errors import ImageTooLargeError, InvalidImageError

_FS_PREFIX = "fsenc:"


def path_to_db(path: str | os.PathLike[str]) -> str:
    """A path as stored in the database: verbatim when it is valid UTF-8, else its bytes
    percent-encoded behind ``fsenc:`` (absolute paths start with ``/``, so this is unambiguous)."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return _FS_PREFIX + urllib.parse.quote_from_bytes(os.fsencode(text), safe="/")


def path_from_db(text: str) -> str:
    """Inverse of :func:`path_to_db`: a path the OS can open."""
    if text.startswith(_FS_PREFIX):
        return os.fsdecode(urllib.parse.unquote_to_bytes(text[len(_FS_PREFIX):]))
    return text


def display_path(text: str) -> str:
    """A printable form of a stored path (undecodable bytes shown as ``\\xNN``)."""
    raw = os.fsencode(path_from_db(text))
    return raw.decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image: ``array`` is HWC uint8 RGB (upright); ``sha256`` is of the file bytes."""

    path: str
    array: np.ndarray
    sha256: str
    width: int
    height: int
    size_bytes: int


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_input_file(path: str, max_bytes: int) -> int:
    """Size in bytes of a regular, non-empty file of at most ``max_bytes``; otherwise
    :class:`InvalidImageError` saying why (missing, symlink loop, not a file, empty, too large)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidImageError("symlink loop") from exc
        if exc.errno == errno.ENOENT:
            raise InvalidImageError("file not found (or a dangling symlink)") from exc
        raise InvalidImageError(f"cannot stat file: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise InvalidImageError("not a regular file")
    if st.st_size == 0:
        raise InvalidImageError("empty file (0 bytes)")
    if st.st_size > max_bytes:
        raise ImageTooLargeError(f"file too large ({st.st_size} bytes > limit {max_bytes})")
    return int(st.st_size)


def read_file_bytes(path: str, max_bytes: int) -> bytes:
    """Read a whole file with clear errors (missing, unreadable, symlink loop, too large, empty)."""
    check_input_file(path, max_bytes)
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise InvalidImageError(f"cannot read file: {exc.strerror or exc}") from exc


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode image bytes to HWC uint8 RGB, upright, first frame; raise InvalidImageError."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > max_pixels:
                raise ImageTooLargeError(
                    f"image too large ({width}x{height} = {width * height} pixels > limit {max_pixels}; "
                    f"possible decompression bomb)"
                )
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            img.load()
            img = ImageOps.exif_transpose(img) or img
            return _to_rgb(img)
    except InvalidImageError:
        raise
    except UnidentifiedImageError as exc:
        raise InvalidImageError("not an image (unrecognised format)") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"image too large (decompression bomb): {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct_error()) as exc:
        reason = str(exc) or exc.__class__.__name__
        if "truncated" in reason.lower() or isinstance(exc, EOFError):
            raise InvalidImageError(f"truncated or corrupt image ({reason})") from exc
        raise InvalidImageError(f"corrupt image ({reason})") from exc


def struct_error() -> type[Exception]:
    import struct

    return struct.error


def _to_rgb(img: "Image.Image") -> np.ndarray:  # type: ignore[name-defined]  # noqa: F821
    """Any PIL mode -> RGB uint8: 16-bit and float images are scaled, alpha composited on white,
    palette/CMYK/grayscale converted."""
    from PIL import Image

    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16"):
            arr = arr / 65535.0 * 255.0
        else:
            lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
            arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        gray = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.array(img.convert("RGB"), dtype=np.uint8)  # a writable copy (torch warns on read-only)


def load_image(path: str | os.PathLike[str], max_pixels: int = 64_000_000,
               max_bytes: int = 256 * 1024 * 1024) -> LoadedImage:
    """Read, hash and decode one image file (see module doc)."""
    p = os.fspath(path)
    data = read_file_bytes(p, max_bytes)
    arr = decode_image(data, max_pixels)
    h, w = arr.shape[:2]
    if h == 0 or w == 0:
        raise InvalidImageError("image has zero width or height")
    return LoadedImage(path=p, array=arr, sha256=sha256_bytes(data), width=w, height=h, size_bytes=len(data))


def discover(paths: Sequence[str | os.PathLike[str]], extensions: Sequence[str]) -> Iterator[str]:
    """Yield absolute image paths under ``paths``: folders recursively (following directory
    symlinks once per real directory, so loops end), files given explicitly always (whatever
    their extension), files found in folders when their extension is known. Sorted per folder
    so runs are reproducible. Paths that do not exist are yielded too (the caller records why)."""
    exts = {e.lower() for e in extensions}
    seen_dirs: set[str] = set()
    for root in paths:
        r = os.path.abspath(os.fspath(root))
        if os.path.isdir(r):
            yield from _walk(r, exts, seen_dirs)
        else:
            yield r


def _walk(top: str, exts: set[str], seen: set[str]) -> Iterator[str]:
    try:
        real = os.path.realpath(top)
    except OSError:
        return
    if real in seen:
        return
    seen.add(real)
    try:
        entries = sorted(os.scandir(top), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        full = os.path.join(top, entry.name)
        try:
            is_dir = entry.is_dir(follow_symlinks=True)
        except OSError:
            is_dir = False
        if is_dir:
            yield from _walk(full, exts, seen)
            continue
        if Path(entry.name).suffix.lower() in exts:
            yield full

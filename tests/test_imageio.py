"""Decoding every kind of bad input: a clear reason, never a crash."""

from __future__ import annotations

import os

import numpy as np
import pytest

from regionsearch.errors import InvalidImageError
from regionsearch.imageio import discover, load_image, path_from_db, path_to_db
from regionsearch.testing.hostile import MAX_PIXELS, write_hostile_corpus

EXTS = (".jpg", ".jpeg", ".png", ".gif", ".webp")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    return folder, write_hostile_corpus(folder)


def test_every_file_decodes_or_fails_with_its_reason(corpus):
    _, expected = corpus
    for path, expectation in expected.items():
        if expectation == "ok":
            img = load_image(path, max_pixels=MAX_PIXELS)
            assert img.array.dtype == np.uint8 and img.array.ndim == 3 and img.array.shape[2] == 3, path
            assert len(img.sha256) == 64
        else:
            with pytest.raises(InvalidImageError) as info:
                load_image(path, max_pixels=MAX_PIXELS)
            assert expectation in str(info.value), (path, str(info.value))


def test_exif_rotation_is_applied(corpus):
    folder, _ = corpus
    upright = load_image(folder / "good.jpg").array
    rotated = load_image(folder / "exif_rotated.jpg").array
    assert upright.shape == (96, 128, 3)
    assert rotated.shape == (128, 96, 3)


@pytest.mark.parametrize("orientation,turns", [(3, 2), (6, -1), (8, 1)])
def test_exif_rotation_turns_the_right_way(tmp_path, orientation, turns):
    """A white block in the stored top-left corner ends where the EXIF tag says (6: rotate 90
    degrees clockwise to display -> top-right; 8: counter-clockwise -> bottom-left; 3: 180)."""
    from PIL import Image

    stored = np.zeros((60, 80, 3), np.uint8)
    stored[:20, :20] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    Image.fromarray(stored).save(path, format="JPEG", quality=95, exif=exif)
    got = load_image(path).array.astype(int)
    expected = np.rot90(stored, k=turns).astype(int)
    assert got.shape == expected.shape
    assert np.abs(got - expected).mean() < 4, np.abs(got - expected).mean()


def test_conversions_keep_content(corpus):
    folder, _ = corpus
    ref = load_image(folder / "good.png").array.astype(int)
    gray16 = load_image(folder / "sixteen_bit.png").array.astype(int)
    assert abs(gray16.mean() - ref.mean()) < 20  # scaled, not clipped to white/black
    assert gray16.std() > 5
    alpha = load_image(folder / "alpha.png").array.astype(float)
    assert alpha.shape == ref.shape
    # the alpha ramp of the hostile corpus (0..254 along the pixels), composited on white
    a = (np.arange(ref.shape[0] * ref.shape[1]).reshape(ref.shape[:2]) % 255)[..., None] / 255.0
    expected = ref * a + 255.0 * (1 - a)
    assert np.abs(alpha - expected).max() <= 2, np.abs(alpha - expected).max()


def test_discover_recurses_once_and_keeps_explicit_files(corpus):
    folder, expected = corpus
    found = list(discover([folder], EXTS))
    assert len(found) == len(set(found))
    assert set(expected) <= set(found)
    assert not any(p.endswith("notes.txt") for p in found)
    assert not any("dir_loop" in p for p in found)
    explicit = list(discover([folder / "notes.txt"], EXTS))
    assert explicit == [str(folder / "notes.txt")]


def test_paths_round_trip_through_the_database_form(corpus):
    folder, expected = corpus
    for path in expected:
        stored = path_to_db(path)
        stored.encode("utf-8")  # always storable as UTF-8 text
        assert path_from_db(stored) == path
        assert os.path.lexists(path_from_db(stored))
    assert path_to_db("/plain/ascii.png") == "/plain/ascii.png"

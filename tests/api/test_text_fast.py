"""``encode_text_truncated`` equals ``model.encode_text`` (the EOT shortcut is exact)."""

from __future__ import annotations

import pytest

from regionsearch.testing.ci import require

torch = require("torch")
open_clip = require("open_clip", "pip install open_clip_torch")

from regionsearch.embed.text_fast import encode_text_truncated  # noqa: E402

TEXTS = ["red circle", "a", "", "the small purple star next to a large green triangle on stripes",
         "word " * 200]


def _check(model, tokenizer, normalize=False):
    tokens = tokenizer(TEXTS)
    with torch.inference_mode():
        full = model.encode_text(tokens, normalize=normalize)
        fast = encode_text_truncated(model, tokens, normalize=normalize)
        single = torch.cat([encode_text_truncated(model, tokens[i:i + 1], normalize=normalize)
                            for i in range(len(TEXTS))])
    assert fast.shape == full.shape and fast.dtype == full.dtype
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(single, full, rtol=1e-5, atol=1e-5)


def test_exact_on_tiny_clip():
    from regionsearch.config import load_config
    from regionsearch.models.clip import load_clip

    bundle = load_clip(load_config("tiny").models.clip, "cpu")
    _check(bundle.model, bundle.tokenizer)
    _check(bundle.model, bundle.tokenizer, normalize=True)


@pytest.mark.slow
def test_exact_on_vit_b32_architecture():
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    _check(model, open_clip.get_tokenizer("ViT-B-32"))


def test_falls_back_for_bidirectional_towers():
    class Fake:
        attn_mask = None

        def encode_text(self, tokens, normalize=False):
            return ("fallback", normalize)

    tokens = torch.zeros((1, 8), dtype=torch.long)
    assert encode_text_truncated(Fake(), tokens) == ("fallback", False)


def test_bfloat16_text_tower_stays_close_and_ranks_the_same():
    """The optional bfloat16 text transformer (search.text_dtype) is an approximation: on the tiny
    CLIP every caption's embedding stays within cosine 0.999 of float32, and each of the 30 class
    captions still picks its own class among the 30 (same argmax as float32)."""
    from regionsearch.config import load_config
    from regionsearch.embed.clip import ClipEmbedder
    from regionsearch.models.clip import load_clip
    from regionsearch.testing.shapes import CLASSES

    bundle = load_clip(load_config("tiny").models.clip, "cpu")
    exact = ClipEmbedder(bundle, text_dtype="float32")
    low = ClipEmbedder(bundle, text_dtype="bfloat16")
    assert exact.text_dtype == "float32" and low.text_dtype == "bfloat16"
    texts = list(CLASSES) + [f"a photo of a {c}." for c in CLASSES] + TEXTS[:4]
    a, b = exact.embed_texts(texts), low.embed_texts(texts)
    cos = (a * b).sum(1)
    assert cos.min() >= 0.999, cos.min()
    n = len(CLASSES)
    assert ((a[n:2 * n] @ a[:n].T).argmax(1) == (b[n:2 * n] @ b[:n].T).argmax(1)).all()
    # the image tower is untouched
    assert next(bundle.model.visual.parameters()).dtype == torch.float32
    assert next(bundle.model.transformer.parameters()).dtype == torch.float32

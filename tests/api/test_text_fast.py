"""``encode_text_truncated`` equals ``model.encode_text`` (the EOT shortcut is exact)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")

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

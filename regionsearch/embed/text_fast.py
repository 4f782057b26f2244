"""Exact shortcut for CLIP text encoding: stop the text transformer at the end-of-text token.

open_clip's text tower uses a *causal* attention mask and pools the hidden state at the
end-of-text (EOT) token, so positions after the longest EOT of a batch never influence the
pooled output. Running the transformer on tokens truncated to that length (with the causal mask
sliced accordingly) gives exactly what ``model.encode_text`` returns, in a fraction of the time
for short queries (a ViT-B-32 text tower spends ~50 ms on the full 77-token context on 2 CPU
cores; a 5-word query needs ~8 positions).

Models where the shortcut does not hold (bidirectional masks, ``last``-token pooling, custom
text towers) fall back to ``model.encode_text``.
"""

from __future__ import annotations

from typing import Any


def _shortcut_pool(model: Any) -> str | None:
    """The pooling type when the truncation is exact for ``model``, else ``None``."""
    needed = ("token_embedding", "positional_embedding", "transformer", "ln_final", "attn_mask")
    if not all(hasattr(model, name) for name in needed):
        return None
    if model.attn_mask is None:  # bidirectional: every position sees every other one
        return None
    pool = getattr(model, "text_pool_type", "argmax")
    if pool not in ("argmax", "eos", "first"):
        return None
    if pool == "eos" and getattr(model, "text_eos_id", None) is None:
        return None
    return pool


def pooled_positions(model: Any, tokens: Any) -> Any:
    """Index of the pooled token of each row (``(B,)`` long tensor)."""
    import torch

    pool = _shortcut_pool(model)
    if pool == "argmax":
        return tokens.argmax(dim=-1)
    if pool == "eos":
        return (tokens == model.text_eos_id).int().argmax(dim=-1)
    return torch.zeros(tokens.shape[0], dtype=torch.long, device=tokens.device)


def encode_text_truncated(model: Any, tokens: Any, normalize: bool = False, transformer: Any = None) -> Any:
    """``model.encode_text(tokens, normalize)``, computed on tokens truncated to the longest
    pooled (EOT) position of the batch. ``tokens``: ``(B, context_length)`` long tensor from the
    model's tokenizer. Returns ``(B, embed_dim)``, equal to ``model.encode_text`` up to float
    rounding.

    ``transformer``: a copy of ``model.transformer`` in another dtype (bfloat16, see
    :func:`regionsearch.models.device.native_bfloat16`) to run instead; its output goes back to float32 before the final
    norm. Not exact: ~3e-3 from the float32 result (tested)."""
    import torch.nn.functional as F
    from open_clip.transformer import text_global_pool

    pool = _shortcut_pool(model)
    if pool is None or tokens.ndim != 2 or tokens.shape[0] == 0:
        return model.encode_text(tokens, normalize=normalize)
    length = int(pooled_positions(model, tokens).max().item()) + 1
    length = max(1, min(length, tokens.shape[1]))
    t = tokens[:, :length]
    if transformer is None:
        cast_dtype = model.transformer.get_cast_dtype()
        x = model.token_embedding(t).to(cast_dtype)
        x = x + model.positional_embedding[:length].to(cast_dtype)
        x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    else:
        low = next(transformer.parameters()).dtype
        x = (model.token_embedding(t) + model.positional_embedding[:length]).to(low)
        x = transformer(x, attn_mask=model.attn_mask[:length, :length].to(low)).float()
    x = model.ln_final(x)
    x = text_global_pool(x, t, pool, eos_token_id=getattr(model, "text_eos_id", None))
    proj = model.text_projection
    if proj is not None:
        x = proj(x) if hasattr(proj, "weight") and callable(proj) else x @ proj
    return F.normalize(x, dim=-1) if normalize else x

"""SAM 2.1's mask decoder restructured so that per-image work is done once per image.

Same weights, same maths as sam2's ``MaskDecoder`` + ``TwoWayTransformer`` (``sam2/modeling/sam/
mask_decoder.py``, ``transformer.py``); what changes is where the work goes. sam2 copies the
``(hw, C)`` image tokens (4,096 x 256 for a 1024-px model) once per prompt and runs everything on
each copy. Here:

1. **Per image, once** (:meth:`SharedWorkDecoder.prepare`): the image tokens plus the no-mask
   embedding (``src``), the positional encoding, their sum, and the three projections of layer 1
   that do not depend on the prompt: the token-to-image attention's key and value projections
   and the image-to-token attention's query projection (in layer 1 the image side has not yet
   seen any prompt). The high-resolution features are re-laid out once for the upscaling (4).
2. **Layer 1 per prompt batch** only projects the prompt tokens: the token-to-image attention of
   every prompt of the batch runs as *one* attention over the shared keys (each query row's
   softmax is independent of the other rows, so stacking all prompts' queries is the same
   maths); the image-to-token attention multiplies the shared image queries by each prompt's
   few keys. The first per-prompt ``(hw, C)`` tensor is the layer's output.
3. **Channels-last tokens throughout**: sam2 flattens ``B x C x H x W`` into a permuted view,
   so every ``keys + key_pe`` adds two tensors of different memory layouts (a strided copy per
   addition); here image tokens and the positional encoding are contiguous ``(hw, C)``, and
   ``keys + key_pe``, which sam2 computes twice per layer (once for each cross attention: the
   keys do not change in between), is computed once, with the token-to-image key projection and
   the image-to-token query projection fused into one matrix product.
4. **Upscaling without layout round trips**: a ``ConvTranspose2d`` with kernel 2 and stride 2 is
   a per-pixel linear map to 2x2 output pixels, so both are matrix products on channels-last
   tokens; the output pixels are kept in block order (coarse pixel, then 2x2 sub-pixel) so no
   intermediate is permuted, the high-resolution features are permuted into that order once
   per image, sam2's hand-written ``LayerNorm2d`` (five element-wise passes over a
   channels-first tensor) becomes one ``layer_norm`` over the contiguous last axis, and only the
   small final ``(B, masks, H, W)`` logits are permuted back to image order.
5. Only the mask tokens whose masks are returned are turned into masks (sam2 computes all four
   and drops one or three).
6. **Image-side projections absorbed into the prompt side** (layers >= 2 and the final
   attention, where the image tokens differ per prompt): an attention score is
   ``q . (W_k x + b_k)``; sam2 projects all ``hw`` image tokens ``x`` (``hw x C x C/2``
   multiply-adds per projection), here the few prompt-side vectors are moved through ``W``
   instead (``q W_k``, a handful of rows) and dotted with the raw tokens. Likewise the value
   projection is applied after the attention-weighted average (the weights of a row sum to
   1), and the image-to-token attention's output projection is applied to the few token
   values before they are spread over the image. Biases that shift a whole softmax row are
   dropped (softmax is invariant to them); the others are kept. Same maths, about half the
   per-prompt products.
7. **The image-to-token softmax** runs over the token axis laid out as ``(tokens, hw)``:
   torch's softmax over a last axis of ~8 elements is several times slower than over a
   leading axis with ``hw`` contiguous elements behind it.

8. **The output stage stays in float32** with a reduced ``dtype``: the IoU prediction head,
   the hypernetwork MLPs and the upscaling with the final mask product run on sam2's float32
   weights, from the transformer's output cast to float32. They decide which candidates
   survive: the IoU prediction ranks the NMS, and the logits near the mask threshold (which
   move the stability score and the boxes) come from the upscaled embedding times the
   hypernetwork weights. Agreement with sam2 on held-out shapes scenes with the tiny trained
   models (tiny preset, bfloat16): everything in bfloat16 1.000 / 0.984-0.992; heads only in
   float32 1.000 / 1.000 on 12 scenes but 1.000 / 0.989 on the test's 8; heads + final product
   1.000 / 0.989; heads + upscaling + product 1.000 / 1.000 on both (``tests/segment/
   test_fast_amg.py``). The transformer (most of the per-prompt work) stays in the reduced dtype.

Results equal sam2's up to floating-point summation order (``tests/segment/test_decoder.py``:
the tiny model and the real hiera-tiny architecture, float32, points, boxes, mask inputs,
single and multimask). With ``dtype`` bfloat16/float16 the prompt-dependent work runs under
autocast (the per-image tensors are kept in that dtype); the logits are returned as float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import SEGMENT_DTYPES
from ..errors import ConfigError, UnknownNameError


def resolve_dtype(name: str, device: Any) -> Any:
    """``segment.dtype`` (one of ``SEGMENT_DTYPES``) -> a torch dtype for ``device``.

    ``auto``: bfloat16 where it is multiplied natively (:func:`~regionsearch.models.device.
    native_bfloat16`), float16 on CUDA devices without bfloat16, float32 elsewhere (emulated
    bfloat16 is slower than float32).
    """
    import torch

    from ..models.device import native_bfloat16

    if name not in SEGMENT_DTYPES:
        raise UnknownNameError("segment dtype", name, SEGMENT_DTYPES)
    if name != "auto":
        return getattr(torch, name)
    dev = str(device)
    if native_bfloat16(dev):
        return torch.bfloat16
    return torch.float16 if dev.startswith("cuda") else torch.float32


def encode_image(predictor: Any, image: Any, dtype: Any) -> dict[str, Any]:
    """``predictor.set_image(image)`` with SAM 2.1's image encoder under ``torch.autocast(dtype)``
    when ``dtype`` is not float32 (``segment.encoder_dtype``); the features are handed on in
    float32 so everything after the encoder runs as with float32 features. Returns
    ``predictor._features``."""
    import torch

    if dtype == torch.float32:
        predictor.set_image(image)
        return predictor._features
    with torch.autocast(predictor.device.type, dtype=dtype):
        predictor.set_image(image)
    feats = predictor._features
    predictor._features = {"image_embed": feats["image_embed"].float(),
                           "high_res_feats": [f.float() for f in feats["high_res_feats"]]}
    return predictor._features


@dataclass
class ImageContext:
    """The prompt-independent tensors of one image (see the module docstring, point 1).

    Token tensors are ``(1, hw, C)`` channels-last; ``k1``/``v1``/``q1`` are split into heads,
    ``(1, heads, hw, C_head)``; ``feat_s1``/``feat_s0`` are the high-resolution features in the
    block order of the upscaling, ``(1, hw * 4, C / 4)`` and ``(1, hw * 16, C / 8)``.
    """

    image: Any  # image tokens without the no-mask embedding (for mask prompts)
    src: Any  # image tokens + no-mask embedding
    pe: Any
    src_pe: Any
    k1: Any
    v1: Any
    q1: Any
    feat_s1: Any
    feat_s0: Any
    hw: tuple[int, int]


def _heads(x: Any, n: int) -> Any:
    """``(B, N, C)`` -> ``(B, heads, N, C / heads)`` (sam2's ``_separate_heads``)."""
    b, t, c = x.shape
    return x.reshape(b, t, n, c // n).transpose(1, 2)


def _norm(norm: Any, x: Any) -> Any:
    """``nn.LayerNorm`` ``norm`` applied to ``x``."""
    import torch.nn.functional as F

    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def _absorb(proj: Any, q: Any) -> Any:
    """Queries ``(B, heads, T, d)`` moved into the input space of the key projection ``proj``
    (``C -> heads * d``), scaled by ``1/sqrt(d)``: ``(B, heads, T, C)``, so that
    ``q' . x == q . (W_h x) / sqrt(d)`` for every image token ``x``. The key bias adds
    ``q . b_h`` to all scores of one query row; a softmax over the image is invariant to that,
    so it is dropped."""
    import torch

    h, d = q.shape[1], q.shape[-1]
    return torch.matmul(q * d ** -0.5, proj.weight.view(h, d, -1))


def _values_after(attn: Any, probs: Any, keys: Any) -> Any:
    """Token-to-image attention output before ``out_proj``, with the value projection applied
    after the weighted average (each row of ``probs`` sums to 1, so ``sum_p P (W x_p + b) = W
    (sum_p P x_p) + b``): ``probs`` ``(B, heads * T, hw)``, ``keys`` ``(B, hw, C)`` ->
    ``(B, T, heads * d)``."""
    import torch

    h = attn.num_heads
    b, ht, _ = probs.shape
    avg = torch.matmul(probs, keys).view(b, h, ht // h, -1)  # (B, H, T, C)
    w = attn.v_proj.weight.view(h, -1, avg.shape[-1])  # (H, d, C)
    out = torch.matmul(avg, w.transpose(-1, -2)) + attn.v_proj.bias.view(h, 1, -1)
    return _merge(out)


def _weighted_out(attn: Any, probs: Any, v: Any, base: Any) -> Any:
    """``base + out_proj(image-to-token attention)`` in one product: ``probs`` ``(B, heads, T,
    hw)`` (softmax over the tokens), ``v`` ``(B, heads, T, d)``. The output projection is applied
    to the few token values first (``v_h W_h``), and its bias is spread as ``b / heads`` over each
    head's rows (every head's weights sum to 1 per pixel), so the result is
    ``base + sum_h probs_h^T (v_h W_h + b / heads)``: ``(B, hw, C)``."""
    import torch

    b, h, t, hw = probs.shape
    w = attn.out_proj.weight  # (C, H * d)
    vo = torch.matmul(v, w.view(w.shape[0], h, -1).permute(1, 2, 0)) + attn.out_proj.bias / h  # (B, H, T, C)
    return torch.baddbmm(base.expand(b, -1, -1), probs.reshape(b, h * t, hw).transpose(1, 2),
                         vo.reshape(b, h * t, -1))


def _merge(x: Any) -> Any:
    """``(B, heads, N, C_head)`` -> ``(B, N, C)`` (sam2's ``_recombine_heads``)."""
    b, n, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, n * d)


class SharedWorkDecoder:
    """Decodes prompt batches of one image against a prepared :class:`ImageContext`.

    ``model``: a ``SAM2Base`` (its ``sam_mask_decoder`` and ``sam_prompt_encoder`` are used, not
    copied); ``dtype``: a torch dtype for the prompt-dependent work (float32 is the exact path).
    ``compile_batch``: if > 0, the per-batch work is ``torch.compile``d for batches of exactly
    that many prompts (smaller batches are padded with copies of their last prompt, so one
    compiled graph serves every call; the inductor cache lives in the user cache dir). Stateless
    between calls apart from read-only weights, so one instance serves many images.
    """

    def __init__(self, model: Any, dtype: Any = None, compile_batch: int = 0):
        import torch

        self.compile_batch = int(compile_batch)
        if self.compile_batch > 0:
            _inductor_cache()
            self._decode = torch.compile(self._decode, dynamic=False)  # type: ignore[method-assign]
        self.model = model
        self.dtype = dtype or torch.float32
        md = model.sam_mask_decoder
        if self.dtype != torch.float32:
            # a copy of the decoder's weights in the reduced dtype, made once: autocast would cast
            # every weight again on every call (measured: ~17% of decoder time in copies)
            import copy

            md = copy.deepcopy(md).to(self.dtype)
        self.md = md
        self.tr = tr = md.transformer
        self.device = md.iou_token.weight.device
        if not md.use_high_res_features:
            raise ConfigError("the shared-work decoder needs a SAM 2.1 model with high-resolution features")
        self.s = 1 if md.pred_obj_scores else 0
        first = tr.layers[0]
        if not first.skip_first_layer_pe:
            raise ConfigError("unexpected SAM 2.1 decoder: its first layer adds the positional encoding")
        with torch.no_grad():
            tokens = [md.iou_token.weight, md.mask_tokens.weight]
            if md.pred_obj_scores:
                tokens.insert(0, md.obj_score_token.weight)
            self.output_tokens = torch.cat(tokens, dim=0)
            # ConvTranspose2d(k=2, s=2) as a linear map per input pixel: weight (in, out, 2, 2) ->
            # (2*2*out, in) with the output channel fastest, so the result is (.., di, dj, out)
            # the upscaling keeps sam2's float32 weights whatever the dtype (module docstring, point 8)
            dc1, ln1, _, dc2, _ = model.sam_mask_decoder.output_upscaling
            self.up = [(self._as_linear(dc.weight), dc.bias.repeat(4), dc.out_channels) for dc in (dc1, dc2)]
        self.ln1 = ln1

    @staticmethod
    def _as_linear(weight: Any) -> Any:
        cin, cout = weight.shape[:2]
        return weight.permute(2, 3, 1, 0).reshape(4 * cout, cin).contiguous()

    # ------------------------------------------------------------------ per image
    def prepare(self, image_embed: Any, high_res_feats: list[Any]) -> ImageContext:
        """Per-image work from sam2's predictor features: ``image_embed`` ``(1, C, h, w)``,
        ``high_res_feats`` ``[(1, C/8, 4h, 4w), (1, C/4, 2h, 2w)]`` (already through
        ``conv_s0``/``conv_s1``, as ``SAM2ImagePredictor`` stores them)."""
        import torch

        tr = self.tr
        pe_enc = self.model.sam_prompt_encoder
        _, c, h, w = image_embed.shape
        with torch.inference_mode(), self._autocast():
            image = image_embed.flatten(2).transpose(1, 2).contiguous()  # (1, hw, C)
            pe = pe_enc.get_dense_pe().flatten(2).transpose(1, 2).contiguous()
            src = image + pe_enc.no_mask_embed.weight.reshape(1, 1, -1)
            src_pe = src + pe
            t2i, i2t = tr.layers[0].cross_attn_token_to_image, tr.layers[0].cross_attn_image_to_token
            k1 = _heads(t2i.k_proj(src_pe), t2i.num_heads).contiguous()
            v1 = _heads(t2i.v_proj(src), t2i.num_heads).contiguous()
            q1 = _heads(i2t.q_proj(src_pe), i2t.num_heads).contiguous()
            s0, s1 = high_res_feats
            # s1[o, 2i+di, 2j+dj] -> (i, j, di, dj, o); s0[o, 4i+2di+ei, 4j+2dj+ej] -> (i, j, di, dj, ei, ej, o)
            c4, c8 = s1.shape[1], s0.shape[1]
            feat_s1 = s1.reshape(1, c4, h, 2, w, 2).permute(0, 2, 4, 3, 5, 1).reshape(1, h * w * 4, c4)
            feat_s0 = s0.reshape(1, c8, h, 2, 2, w, 2, 2).permute(0, 2, 5, 3, 6, 4, 7, 1).reshape(1, h * w * 16, c8)
            cast = self._cast
            return ImageContext(image=cast(image), src=cast(src), pe=cast(pe), src_pe=cast(src_pe), k1=cast(k1),
                                v1=cast(v1), q1=cast(q1), feat_s1=feat_s1.float().contiguous(),  # point 8: float32
                                feat_s0=feat_s0.float().contiguous(), hw=(h, w))

    def _cast(self, x: Any) -> Any:
        return x.to(self.dtype).contiguous()

    def _autocast(self) -> Any:
        """Autocast for the per-image work only: it runs the float32 features through the
        (reduced-dtype) decoder weights once per image."""
        import contextlib

        import torch

        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    # ------------------------------------------------------------------ per prompt batch
    def decode(self, ctx: ImageContext, sparse: Any, dense: Any | None, multimask: bool) -> tuple[Any, Any]:
        """Low-resolution mask logits ``(B, K, 4h, 4w)`` float32 and predicted IoU ``(B, K)`` for
        ``B`` prompts: ``sparse`` ``(B, N, C)`` from the prompt encoder; ``dense`` ``(B, C, h, w)``
        mask-prompt embeddings or ``None`` (no mask prompt: the shared no-mask path). ``K`` is 3
        for ``multimask`` else 1, chosen as sam2's ``MaskDecoder.forward`` chooses."""
        import torch

        b = sparse.shape[0]
        pad = self.compile_batch - b if dense is None and 0 < b < self.compile_batch else 0
        if pad:
            sparse = torch.cat([sparse, sparse[-1:].expand(pad, -1, -1)])
        if dense is not None:
            dense = dense.to(self.dtype)
        with torch.inference_mode():
            masks, iou = self._decode(ctx, sparse.to(self.dtype), dense, multimask)
        return masks[:b].float(), iou[:b].float()

    def _decode(self, ctx: ImageContext, sparse: Any, dense: Any | None, multimask: bool) -> tuple[Any, Any]:
        """sam2's ``MaskDecoder.predict_masks`` + output selection for one prompt batch: the two-way
        transformer's first layer, its later layers and final attention, then the masks."""
        import torch

        b = sparse.shape[0]
        tokens = torch.cat([self.output_tokens.unsqueeze(0).expand(b, -1, -1), sparse], dim=1)
        queries, keys = self._first_layer(ctx, tokens, dense)
        hs, keys = self._later_layers(ctx, tokens, queries, keys)
        return self._masks(ctx, hs, keys, multimask)

    def _first_layer(self, ctx: ImageContext, tokens: Any, dense: Any | None) -> tuple[Any, Any]:
        """Layer 1 of the two-way transformer on the per-image work of ``ctx``; (queries, keys)."""
        import torch
        import torch.nn.functional as F

        tr = self.tr
        b = tokens.shape[0]
        query_pe = tokens
        # no positional encoding on its self-attention (skip_first_layer_pe)
        first = tr.layers[0]
        queries = first.norm1(first.self_attn(q=tokens, k=tokens, v=tokens))
        t2i, i2t = first.cross_attn_token_to_image, first.cross_attn_image_to_token
        if dense is None:
            src, src_pe, k1, v1, q1 = ctx.src, ctx.src_pe, ctx.k1, ctx.v1, ctx.q1
        else:  # a mask prompt changes the image side per prompt: sam2's maths on this batch
            src = ctx.image + self._cast(dense.flatten(2).transpose(1, 2))
            src_pe = src + ctx.pe
            k1, v1 = _heads(t2i.k_proj(src_pe), t2i.num_heads), _heads(t2i.v_proj(src), t2i.num_heads)
            q1 = _heads(i2t.q_proj(src_pe), i2t.num_heads)
        q = t2i.q_proj(queries + query_pe)
        if k1.shape[0] == 1:  # shared keys: all prompts' query rows in one attention
            att = F.scaled_dot_product_attention(_heads(q.reshape(1, -1, q.shape[-1]), t2i.num_heads), k1, v1)
            att = _merge(att).reshape(b, -1, q.shape[-1])
        else:
            att = _merge(F.scaled_dot_product_attention(_heads(q, t2i.num_heads), k1, v1))
        queries = first.norm2(queries + t2i.out_proj(att))
        queries = first.norm3(queries + first.mlp(queries))
        k, v = _heads(i2t.k_proj(queries + query_pe), i2t.num_heads), _heads(i2t.v_proj(queries), i2t.num_heads)
        if q1.shape[0] == 1:  # shared image queries: one (heads, B*T, hw) product, no broadcast copy of q1
            h_, t_ = k.shape[1], k.shape[2]
            scores = torch.matmul(k.transpose(0, 1).reshape(h_, b * t_, -1) * k.shape[-1] ** -0.5, q1[0].transpose(1, 2))
            probs = scores.view(h_, b, t_, -1).softmax(-2).transpose(0, 1)
        else:
            probs = torch.matmul(k * k.shape[-1] ** -0.5, q1.transpose(-1, -2)).softmax(-2)
        keys = _norm(first.norm4, _weighted_out(i2t, probs, v, src))

        return queries, keys

    def _later_layers(self, ctx: ImageContext, tokens: Any, queries: Any, keys: Any) -> tuple[Any, Any]:
        """Layers >= 2 and the final token-to-image attention; (normalised tokens ``hs``, keys)."""
        import torch

        tr, query_pe = self.tr, tokens
        # ---- layers >= 2: everything depends on the prompt; the image-side projections are
        # absorbed into the prompt side (module docstring, point 6)
        for layer in tr.layers[1:]:
            q = queries + query_pe
            queries = layer.norm1(queries + layer.self_attn(q=q, k=q, v=queries))
            t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
            kpe = keys + ctx.pe  # contiguous + contiguous: no layout copy
            q_t2i = _absorb(t2i.k_proj, _heads(t2i.q_proj(queries + query_pe), t2i.num_heads))
            probs = torch.matmul(q_t2i.flatten(1, 2), kpe.transpose(1, 2)).softmax(-1)
            # token-to-image: softmax over the image, then the value projection after the average
            queries = layer.norm2(queries + t2i.out_proj(_values_after(t2i, probs, keys)))
            queries = layer.norm3(queries + layer.mlp(queries))
            # image-to-token, the image queries absorbed into the token keys; the query bias adds
            # b_q . k per (head, token), not constant along the softmax axis (tokens), so it is kept
            k_tok = _heads(i2t.k_proj(queries + query_pe), i2t.num_heads)  # (B, H, T, d)
            k_i2t = _absorb(i2t.q_proj, k_tok)
            bias = torch.matmul(k_tok, i2t.q_proj.bias.view(i2t.num_heads, -1, 1)) * k_tok.shape[-1] ** -0.5
            probs = (torch.matmul(k_i2t.flatten(1, 2), kpe.transpose(1, 2)).view(bias.shape[:3] + kpe.shape[1:2])
                     + bias).softmax(-2)
            keys = _norm(layer.norm4, _weighted_out(i2t, probs, _heads(i2t.v_proj(queries), i2t.num_heads), keys))

        # ---- final token-to-image attention, absorbed as in layers >= 2
        fin = tr.final_attn_token_to_image
        q_fin = _absorb(fin.k_proj, _heads(fin.q_proj(queries + query_pe), fin.num_heads))
        probs = torch.matmul(q_fin.flatten(1, 2), (keys + ctx.pe).transpose(1, 2)).softmax(-1)
        hs = tr.norm_final_attn(queries + fin.out_proj(_values_after(fin, probs, keys)))
        return hs, keys

    def _masks(self, ctx: ImageContext, hs: Any, keys: Any, multimask: bool) -> tuple[Any, Any]:
        """Hypernetwork masks and IoU predictions from the transformer's output (sam2's
        ``MaskDecoder.forward`` output selection included)."""
        import torch
        import torch.nn.functional as F

        md = self.md
        b = hs.shape[0]
        h, w = ctx.hw
        # ---- which masks are returned (sam2's MaskDecoder.forward)
        s = self.s
        dynamic = not multimask and md.dynamic_multimask_via_stability and not md.training
        chosen = list(range(1, md.num_mask_tokens)) if multimask else \
            list(range(md.num_mask_tokens)) if dynamic else [0]
        # the output stage in float32 (module docstring, point 8): sam2's float32 weights on the
        # float32 tokens
        heads, hs = self.model.sam_mask_decoder, hs.float()
        hyper = torch.stack([heads.output_hypernetworks_mlps[i](hs[:, s + 1 + i]) for i in chosen], dim=1)
        iou = heads.iou_prediction_head(hs[:, s])

        # ---- upscaling on channels-last tokens in block order (module docstring, point 4)
        (w1, b1, c4), (w2, b2, c8) = self.up
        dc1_act, dc2_act = md.output_upscaling[2], md.output_upscaling[4]
        up = F.linear(keys.float(), w1, b1).reshape(b, -1, c4) + ctx.feat_s1
        up = dc1_act(F.layer_norm(up, (c4,), self.ln1.weight, self.ln1.bias, self.ln1.eps))
        up = dc2_act(F.linear(up, w2, b2).reshape(b, -1, c8) + ctx.feat_s0)
        k = len(chosen)
        masks = torch.matmul(up, hyper.transpose(1, 2))  # (B, hw*16, K) block order
        masks = masks.reshape(b, h, w, 2, 2, 2, 2, k).permute(0, 7, 1, 3, 5, 2, 4, 6).reshape(b, k, 4 * h, 4 * w)

        if multimask:
            return masks, iou[:, 1:]
        if dynamic:
            return md._dynamic_multimask_via_stability(masks.float(), iou.float())
        return masks, iou[:, 0:1]



def inductor_cache_dir() -> Any:
    """Where ``torch.compile``'s generated kernels are kept across processes:
    ``$TORCHINDUCTOR_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/regionsearch/inductor``
    (``~/.cache/...``)."""
    import os
    from pathlib import Path

    if os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "regionsearch" / "inductor"


def _inductor_cache() -> None:
    """Keep ``torch.compile``'s kernels across processes (the compilation costs tens of seconds
    per process and batch shape): points inductor at :func:`inductor_cache_dir`."""
    import os

    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(inductor_cache_dir()))

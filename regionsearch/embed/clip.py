"""Batched CLIP encoding of region crops and texts; vectors are L2-normalised float32."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

from ..config import TEXT_DTYPES
from ..errors import UnknownNameError
from ..models.clip import ClipBundle


class ClipEmbedder:
    """``RegionEmbedder`` over an open_clip model.

    ``embed_images`` takes square ``(S, S, 3)`` uint8 crops already at the model's input size
    (see :func:`regionsearch.embed.crops.region_crop`); ``embed_texts`` caches recent texts.
    """

    def __init__(self, bundle: ClipBundle, batch_size: int = 32, text_cache_size: int = 1024,
                 text_dtype: str = "float32"):
        self.bundle = bundle
        self.dim = bundle.dim
        self.image_size = bundle.image_size
        self.batch_size = max(1, batch_size)
        self._mean = np.asarray(bundle.mean, dtype=np.float32).reshape(1, 3, 1, 1)
        self._std = np.asarray(bundle.std, dtype=np.float32).reshape(1, 3, 1, 1)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = text_cache_size
        self._lock = threading.Lock()
        if text_dtype not in TEXT_DTYPES:
            raise UnknownNameError("text tower dtype", text_dtype, TEXT_DTYPES)
        self._text_transformer: Any = None
        if text_dtype != "float32":
            from ..models.device import native_bfloat16
            from .text_fast import _shortcut_pool

            if (text_dtype == "bfloat16" or native_bfloat16(bundle.device)) and _shortcut_pool(bundle.model):
                import copy

                import torch

                # a bfloat16 copy of the text transformer only: the image tower stays float32
                self._text_transformer = copy.deepcopy(bundle.model.transformer).to(torch.bfloat16).eval()
        self.text_dtype = "bfloat16" if self._text_transformer is not None else "float32"

    @property
    def name(self) -> str:
        return self.bundle.name

    def _to_tensor(self, crops: Sequence[np.ndarray]) -> Any:
        import torch

        arr = np.stack(crops).astype(np.float32).transpose(0, 3, 1, 2) / 255.0
        arr = (arr - self._mean) / self._std
        return torch.from_numpy(np.ascontiguousarray(arr)).to(self.bundle.device)

    def embed_images(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """``(n, dim)`` float32 L2-normalised embeddings of uint8 HWC crops."""
        import torch

        if len(crops) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        with torch.inference_mode():
            for i in range(0, len(crops), self.batch_size):
                batch = self._to_tensor(crops[i:i + self.batch_size])
                feats = self.bundle.model.encode_image(batch).float()
                out.append(torch.nn.functional.normalize(feats, dim=-1).cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, dim)`` float32 L2-normalised text embeddings (cached per text, LRU of
        ``text_cache_size``). Safe from many threads; a batch larger than the cache is answered
        from the vectors computed for it, never by a second pass over an evicted cache."""
        import torch

        found: dict[str, np.ndarray] = {}
        with self._lock:
            for t in dict.fromkeys(texts):
                vec = self._cache.get(t)
                if vec is not None:
                    self._cache.move_to_end(t)
                    found[t] = vec
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            from .text_fast import encode_text_truncated

            with torch.inference_mode():
                tokens = self.bundle.tokenizer(missing).to(self.bundle.device)
                # exact: the causal text tower pools at the end-of-text token (see text_fast)
                feats = encode_text_truncated(self.bundle.model, tokens,
                                              transformer=self._text_transformer).float()
                vecs = torch.nn.functional.normalize(feats, dim=-1).cpu().numpy().astype(np.float32)
            found.update(zip(missing, vecs))
            with self._lock:
                for text, vec in zip(missing, vecs):
                    self._cache[text] = vec
                    self._cache.move_to_end(text)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[t] for t in texts])

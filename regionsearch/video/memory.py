"""The ``memory`` propagator: SAM 2.1's own video tracking (memory attention over the object's
earlier masks and object pointers), driven one sampled frame at a time.

Unlike sam2's ``SAM2VideoPredictor``, which decodes every frame up front and keeps every frame's
output for ever, this feeds frames as they are decoded and keeps per object only what attention
reads: the last ``max(num_maskmem, max_obj_ptrs_in_encoder)`` propagated outputs and the last
2 conditioning (keyframe) outputs, so memory does not grow with the video's length. Each object
runs SAM 2.1's ``track_step`` separately (sam2's per-object predictor does the same), so objects
can be added at any keyframe. The score of a proposal is the object-presence probability
(sigmoid of the object-score logit).

Images are resized to the model's square input and normalised with sam2's ImageNet mean/std
(as ``sam2.utils.misc.load_video_frames`` does); masks come back at the frame's resolution.

A first click or box (:meth:`MemoryPropagator.prompt`) runs the frozen SAM heads on the frame's
features as sam2's video predictor does on an initial conditioning frame (``no_mem_embed``
added, multimask output for one click, the candidate with the highest predicted IoU), i.e. what
the image predictor gives. ``feature_cache`` (an LRU keyed by the caller, e.g. video hash and
frame index) lets a re-run over the same frames (a correction click) skip the image encoder.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

from ..errors import InvalidRequestError
from .propagation import Proposal

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
_COND_KEPT = 2
_COMPACT = ("maskmem_features", "maskmem_pos_enc", "pred_masks", "obj_ptr", "object_score_logits")


class MemoryPropagator:
    """See the module doc. ``model``: a loaded ``SAM2Base`` (e.g. ``Pipeline.sam_model``)."""

    name = "memory"

    def __init__(self, model: Any, feature_cache: Any = None):
        import torch

        self.model = model
        self.device = next(model.parameters()).device
        self.size = int(model.image_size)
        self.keep = max(int(model.num_maskmem), int(getattr(model, "max_obj_ptrs_in_encoder", 16)))
        self.objects: dict[int, dict[str, Any]] = {}
        self.t = -1
        self._feats: Any = None
        self._hw: tuple[int, int] = (0, 0)
        self._mean = torch.tensor(_MEAN).view(3, 1, 1)
        self._std = torch.tensor(_STD).view(3, 1, 1)
        self.cache = feature_cache
        self.encoded = 0  # frames that went through the image encoder (not from the cache)

    def _set(self, image: np.ndarray, key: Any = None) -> None:
        import torch
        import torch.nn.functional as F

        self.t += 1
        self._hw = image.shape[:2]
        cached = self.cache.get(key) if self.cache is not None and key is not None else None
        if cached is not None:
            self._feats = cached
            return
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
        x = F.interpolate(x[None], size=(self.size, self.size), mode="bilinear", align_corners=False)[0]
        x = ((x - self._mean) / self._std)[None].to(self.device)
        with torch.inference_mode():
            _, feats, pos, sizes = self.model._prepare_backbone_features(self.model.forward_image(x))
        self._feats = (feats, pos, sizes)
        self.encoded += 1
        if self.cache is not None and key is not None:
            self.cache.put(key, self._feats)

    def _run(self, obj: dict[str, Any], mask_input: Any = None) -> tuple[dict[str, Any], np.ndarray, float]:
        import torch
        import torch.nn.functional as F

        feats, pos, sizes = self._feats
        with torch.inference_mode():
            out = self.model.track_step(
                frame_idx=self.t, is_init_cond_frame=mask_input is not None and not obj["cond_frame_outputs"],
                current_vision_feats=feats, current_vision_pos_embeds=pos, feat_sizes=sizes, point_inputs=None,
                mask_inputs=mask_input, output_dict=obj, num_frames=self.t + 1_000_000, track_in_reverse=False,
                run_mem_encoder=True)
            up = F.interpolate(out["pred_masks"].float(), size=self._hw, mode="bilinear", align_corners=False)[0, 0]
            logit = out.get("object_score_logits")
            score = float(torch.sigmoid(logit.float()).max()) if logit is not None else 1.0
        return {k: out[k] for k in _COMPACT if k in out}, (up > 0).cpu().numpy(), score

    def step(self, image: np.ndarray, key: Any = None) -> dict[int, Proposal]:
        self._set(image, key)
        res: dict[int, Proposal] = {}
        for oid, obj in self.objects.items():
            compact, mask, score = self._run(obj)
            outputs = obj["non_cond_frame_outputs"]
            outputs[self.t] = compact
            while len(outputs) > self.keep:
                outputs.popitem(last=False)
            obj["last_mask"] = mask
            res[oid] = Proposal(mask, score)
        return res

    def add(self, obj_id: int, mask: np.ndarray) -> None:
        """Condition ``obj_id`` on ``mask`` at the current frame (a keyframe mask or a new
        object); a mask that is just the object's own propagated output adds nothing."""
        import torch
        import torch.nn.functional as F

        if self._feats is None:
            raise InvalidRequestError("no frame yet: call begin(image) or step(image) first")
        obj = self.objects.get(obj_id)
        if obj is None:
            obj = {"cond_frame_outputs": OrderedDict(), "non_cond_frame_outputs": OrderedDict()}
            self.objects[obj_id] = obj
        elif self.t in obj["non_cond_frame_outputs"] and np.array_equal(obj.get("last_mask"), mask):
            return
        m = torch.from_numpy(mask.astype(np.float32))[None, None]
        m = (F.interpolate(m, size=(self.size, self.size), mode="bilinear", align_corners=False) > 0.5).float()
        obj["non_cond_frame_outputs"].pop(self.t, None)
        compact, _, _ = self._run(obj, mask_input=m.to(self.device))
        obj["cond_frame_outputs"][self.t] = compact
        while len(obj["cond_frame_outputs"]) > _COND_KEPT:
            obj["cond_frame_outputs"].popitem(last=False)

    def remove(self, obj_id: int) -> None:
        self.objects.pop(obj_id, None)

    def begin(self, image: np.ndarray, key: Any = None) -> None:
        """Make ``image`` the current frame without propagating (for a first prompt)."""
        self._set(image, key)

    def prompt(self, points: Sequence[Sequence[float]] | None, labels: Sequence[int] | None,
               box: Sequence[float] | None = None) -> Proposal:
        """A mask on the current frame from clicks ``(x, y)`` pixels with labels 1/0 and/or an
        XYXY box (see the module doc); condition an object on it with :meth:`add`."""
        import torch
        import torch.nn.functional as F

        if self._feats is None:
            raise InvalidRequestError("no frame yet: call begin(image) or step(image) first")
        h, w = self._hw
        pts = [[float(x), float(y)] for x, y in (points or [])]
        lab = [int(v) for v in (labels or [])]
        if box is not None:
            pts = [[float(box[0]), float(box[1])], [float(box[2]), float(box[3])]] + pts
            lab = [2, 3] + lab
        if not pts:
            raise InvalidRequestError("give at least one point or a box")
        scale = torch.tensor([self.size / w, self.size / h])
        inputs = {"point_coords": (torch.tensor(pts) * scale)[None].to(self.device),
                  "point_labels": torch.tensor(lab, dtype=torch.int32)[None].to(self.device)}
        feats, pos, sizes = self._feats
        with torch.inference_mode():
            _, sam_out, _, _ = self.model._track_step(
                self.t, True, feats, pos, sizes, inputs, None, {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}},
                self.t + 1, False, None)
            high, ious = sam_out[4], sam_out[2]
            up = F.interpolate(high.float(), size=self._hw, mode="bilinear", align_corners=False)[0, 0]
            score = float(ious.max())
        return Proposal((up > 0).cpu().numpy(), score)

    def memory_entries(self) -> int:
        """Stored outputs over all objects (bounded: see the module doc)."""
        return sum(len(o["cond_frame_outputs"]) + len(o["non_cond_frame_outputs"]) for o in self.objects.values())

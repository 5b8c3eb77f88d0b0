"""Production entity proposer: SAM2 automatic mask generation on the tiles [M §1.2(b), issue 13 §1].

The method proposes class-agnostic entities with CropFormer; we use SAM 2.1's automatic mask
generation (AMG) with **the propagation checkpoint** (``propagate.sam2_model`` /
``propagate.sam2_checkpoint``: one model, two roles, one download, one entry in the model store).
It implements :class:`~tasks.backends.protocols.EntitySegmentor`, so it runs where the CPU
proposer runs — on the three seam-aware tiles and the two polar views (``propose.layout: tiles``)
— and the tile merge, seam merge and polar fusion of :mod:`tasks.labeling.proposals` are reused.

``sam2.automatic_mask_generator`` (and ``SAM2ImagePredictor``, through ``sam2.utils.transforms``)
import torchvision, whose CUDA build cannot be installed beside this torch. The generator is
rebuilt here from the model's own parts, following SAM2 1.1's code step by step:

* image encoding as ``SAM2ImagePredictor.set_image``: the tile resized to ``image_size`` squared
  (bilinear, antialiased, as torchvision's ``Resize`` on a tensor), ImageNet mean/std,
  ``forward_image``, ``_prepare_backbone_features``, ``no_mem_embed`` added to the lowest-resolution
  features (``directly_add_no_mem_embed``);
* prompts as ``SAM2AutomaticMaskGenerator._process_batch``: a ``points_per_side``² grid
  (``sam2.utils.amg.build_point_grid``, torch-only), one positive point per prompt, three masks
  per point (``multimask_output``), decoded ``points_per_batch`` at a time by
  ``sam_prompt_encoder`` + ``sam_mask_decoder`` (``SAM2ImagePredictor._predict``), logits
  upsampled to the tile (bilinear, ``postprocess_masks``);
* filtering: predicted IoU > ``pred_iou_thresh``, stability score
  (``sam2.utils.amg.calculate_stability_score``) >= ``stability_thresh``, masks = logits > 0;
  the IoU filter is applied before the upsampling (same result, a fraction of the memory);
* box NMS at ``box_nms_iou`` scored by predicted IoU — :func:`box_nms`, plain torch/numpy, the
  semantics of ``torchvision.ops.batched_nms`` with one category (suppress IoU > threshold);
* small-region removal as ``postprocess_small_regions``: holes then islands under the area
  threshold (``sam2.utils.amg.remove_small_regions``, OpenCV), a second NMS preferring masks the
  clean-up did not change. One crop layer (``crop_n_layers=0``, SAM2's default): the tiles are the
  crops.

The masks overlap; the protocol returns an exclusive label map [M §1.2(b)]: masks are painted
largest first, so a smaller mask lying on a larger one (a person on a wall) keeps its pixels, and
a mask left with fewer than the area threshold of visible pixels is dropped.

**CUDA out of memory**: a batch of points that runs out of memory is decoded again in halves
(down to one point, then once more after emptying the cache, then
:class:`~tasks.backends.torch_runtime.ProposalOutOfMemory`), as the propagator does for frames.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from tasks.backends.torch_runtime import autocast, autocast_dtype, resolve_device, run_batched

log = logging.getLogger(__name__)

_IMG_MEAN = (0.485, 0.456, 0.406)
_IMG_STD = (0.229, 0.224, 0.225)
_REF_AREA = 1024 * 1024    # amg_min_region_px_at_1024 is in pixels of a 1024^2 tile


def box_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression: indices of the kept boxes, highest score first.

    ``boxes`` (N, 4) x1 y1 x2 y2. The semantics of ``torchvision.ops.nms`` (what SAM2's
    ``batched_nms`` with one category reduces to): boxes are visited by decreasing score and a
    box is dropped when its IoU with a kept box is *greater* than the threshold; areas are
    ``(x2 - x1) * (y2 - y1)``; a 0/0 IoU (two empty boxes) suppresses nothing. Written here
    because torchvision cannot be installed beside this torch (issue 13 §1)."""
    n = int(boxes.shape[0])
    if n == 0:
        return torch.zeros(0, dtype=torch.long)
    b = boxes.detach().to("cpu", torch.float64).numpy()
    order = np.argsort(-scores.detach().to("cpu", torch.float64).numpy(), kind="stable")
    b = b[order]
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    suppressed = np.zeros(n, bool)
    keep = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for i in range(n):
            if suppressed[i]:
                continue
            keep.append(i)
            rest = slice(i + 1, n)
            w = np.clip(np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0]), 0, None)
            h = np.clip(np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1]), 0, None)
            inter = w * h
            iou = inter / (area[i] + area[rest] - inter)
            suppressed[rest] |= iou > iou_threshold
    return torch.as_tensor(order[keep], dtype=torch.long)


@dataclass
class MaskSet:
    """What the generator found on one image, before the masks are made exclusive."""

    masks: torch.Tensor        # bool (n, h, w), on the CPU
    iou_preds: torch.Tensor    # (n,)
    stability: torch.Tensor    # (n,)
    points: torch.Tensor       # (n, 2) the prompt (x, y) in image pixels

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    def take(self, idx: torch.Tensor) -> MaskSet:
        return MaskSet(self.masks[idx], self.iou_preds[idx], self.stability[idx], self.points[idx])


class Sam2EntitySegmentor:
    """SAM2 automatic masks -> an exclusive int32 label map per image (see the module doc)."""

    name = "sam2_amg"

    def __init__(self, model, *, device: torch.device, amp_dtype: torch.dtype | None = None,
                 points_per_side: int = 32, points_per_batch: int = 64, pred_iou_thresh: float = 0.8,
                 stability_thresh: float = 0.95, stability_offset: float = 1.0, box_nms_iou: float = 0.7,
                 min_region_px_at_1024: int = 100, mask_threshold: float = 0.0):
        from sam2.utils.amg import build_point_grid

        self.model = model
        self.device = device
        self.amp = amp_dtype
        self.image_size = int(model.image_size)
        self.points_per_batch = max(1, int(points_per_batch))
        self.pred_iou_thresh = float(pred_iou_thresh)
        self.stability_thresh = float(stability_thresh)
        self.stability_offset = float(stability_offset)
        self.box_nms_iou = float(box_nms_iou)
        self.min_region_px_at_1024 = int(min_region_px_at_1024)
        self.mask_threshold = float(mask_threshold)
        self.grid = build_point_grid(int(points_per_side))      # (n, 2) in [0, 1], x then y
        self._mean = torch.tensor(_IMG_MEAN, device=device)[:, None, None]
        self._std = torch.tensor(_IMG_STD, device=device)[:, None, None]

    # -- the protocol -----------------------------------------------------------------------------
    def segment(self, image: np.ndarray) -> np.ndarray:
        self._check(image)
        h, w = image.shape[:2]
        return self.exclusive(self.generate(image), (h, w), self.min_region_px(h, w))

    def min_region_px(self, h: int, w: int) -> int:
        return int(round(self.min_region_px_at_1024 * h * w / _REF_AREA))

    # -- automatic mask generation ----------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, image: np.ndarray) -> MaskSet:
        """Every mask the generator keeps on ``image`` (RGB uint8), after NMS and clean-up."""
        self._check(image)
        h, w = image.shape[:2]
        feats = self._encode(image)
        points = torch.as_tensor(self.grid * np.array([w, h])[None], dtype=torch.float32)
        parts, self.points_per_batch = run_batched(
            points, self.points_per_batch, lambda chunk: self._decode(feats, chunk, (h, w)),
            what="decoding SAM2 point prompts", device=self.device)
        parts = [p for p in parts if len(p)]
        if not parts:
            return _empty(h, w)
        found = MaskSet(torch.cat([p.masks for p in parts]), torch.cat([p.iou_preds for p in parts]),
                        torch.cat([p.stability for p in parts]), torch.cat([p.points for p in parts]))
        from sam2.utils.amg import batched_mask_to_box

        found = found.take(box_nms(batched_mask_to_box(found.masks), found.iou_preds, self.box_nms_iou))
        min_px = self.min_region_px(h, w)
        if min_px > 0 and len(found):
            found = self._remove_small_regions(found, min_px)
        return found

    def _check(self, image: np.ndarray) -> None:
        if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8):
            raise ValueError(f"{self.name} takes RGB uint8 (h, w, 3) images, got "
                             f"{getattr(image, 'dtype', type(image))} {getattr(image, 'shape', '')}")
        if min(image.shape[:2]) < 2:
            raise ValueError(f"{self.name}: image {image.shape[1]}x{image.shape[0]} is too small")

    def _encode(self, image: np.ndarray) -> dict:
        """``SAM2ImagePredictor.set_image`` without torchvision."""
        s = self.image_size
        x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1)[None].float() / 255.0
        x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        x = (x - self._mean) / self._std
        with autocast(self.device, self.amp):
            backbone_out = self.model.forward_image(x)
            _, vision_feats, _, feat_sizes = self.model._prepare_backbone_features(backbone_out)
            if self.model.directly_add_no_mem_embed:
                vision_feats[-1] = vision_feats[-1] + self.model.no_mem_embed
        feats = [f.permute(1, 2, 0).reshape(1, -1, *size) for f, size in zip(vision_feats[::-1], feat_sizes[::-1])][::-1]
        return {"image_embed": feats[-1], "high_res_feats": feats[:-1]}

    def _decode(self, feats: dict, points: torch.Tensor, hw: tuple[int, int]) -> MaskSet:
        """One batch of point prompts -> the masks that pass the IoU and stability filters
        (``SAM2AutomaticMaskGenerator._process_batch``)."""
        from sam2.utils.amg import calculate_stability_score

        h, w = hw
        n = points.shape[0]
        coords = points.to(self.device).clone()
        coords[:, 0] *= self.image_size / w
        coords[:, 1] *= self.image_size / h
        labels = torch.ones((n, 1), dtype=torch.int, device=self.device)
        with autocast(self.device, self.amp):
            sparse, dense = self.model.sam_prompt_encoder(points=(coords[:, None, :], labels), boxes=None, masks=None)
            low_res, iou_preds, _, _ = self.model.sam_mask_decoder(
                image_embeddings=feats["image_embed"], image_pe=self.model.sam_prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=True,
                repeat_image=n > 1, high_res_features=feats["high_res_feats"])
        low_res, iou_preds = low_res.float(), iou_preds.float()            # (n, 3, s/4, s/4), (n, 3)
        k = low_res.shape[1]
        owner = torch.arange(n, device=self.device).repeat_interleave(k)
        low_res, iou_flat = low_res.flatten(0, 1), iou_preds.flatten(0, 1)
        keep = iou_flat > self.pred_iou_thresh if self.pred_iou_thresh > 0 else torch.ones_like(iou_flat, dtype=torch.bool)
        if not bool(keep.any()):
            return _empty(h, w)
        logits = F.interpolate(low_res[keep][:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
        stab = calculate_stability_score(logits, self.mask_threshold, self.stability_offset)
        ok = stab >= self.stability_thresh if self.stability_thresh > 0 else torch.ones_like(stab, dtype=torch.bool)
        who = owner[keep][ok].cpu()
        return MaskSet((logits[ok] > self.mask_threshold).cpu(), iou_flat[keep][ok].cpu(), stab[ok].cpu(),
                       points.cpu()[who])

    def _remove_small_regions(self, found: MaskSet, min_px: int) -> MaskSet:
        """``SAM2AutomaticMaskGenerator.postprocess_small_regions``: holes, then islands, under
        ``min_px``; NMS again, preferring masks the clean-up left unchanged."""
        from sam2.utils.amg import batched_mask_to_box, remove_small_regions

        cleaned, scores = [], []
        for m in found.masks.numpy():
            m2, changed_h = remove_small_regions(m, min_px, mode="holes")
            m2, changed_i = remove_small_regions(m2, min_px, mode="islands")
            cleaned.append(torch.from_numpy(np.asarray(m2, bool)))
            scores.append(0.0 if (changed_h or changed_i) else 1.0)
        masks = torch.stack(cleaned)
        keep = box_nms(batched_mask_to_box(masks), torch.tensor(scores), self.box_nms_iou)
        out = found.take(keep)
        out.masks = masks[keep]
        return out

    # -- exclusive label map ----------------------------------------------------------------------
    @staticmethod
    def exclusive(found: MaskSet, hw: tuple[int, int], min_px: int) -> np.ndarray:
        """Paint the masks largest first (smaller ones on top), drop those left with fewer than
        ``min_px`` visible pixels (at least 1), number the rest 1..n in painting order."""
        h, w = hw
        labels = np.zeros((h, w), np.int32)
        if not len(found):
            return labels
        masks = found.masks.numpy()
        areas = masks.reshape(len(found), -1).sum(1)
        order = np.argsort(-areas, kind="stable")
        for j, i in enumerate(order.tolist(), start=1):
            labels[masks[i]] = j
        visible = np.bincount(labels.ravel(), minlength=len(found) + 1)
        lut = np.zeros(len(found) + 1, np.int32)
        alive = np.flatnonzero(visible[1:] >= max(1, min_px)) + 1
        lut[alive] = np.arange(1, alive.size + 1, dtype=np.int32)
        return lut[labels]


def _empty(h: int, w: int) -> MaskSet:
    return MaskSet(torch.zeros((0, h, w), dtype=torch.bool), torch.zeros(0), torch.zeros(0), torch.zeros((0, 2)))


def build_sam2_entities(config, store=None, *, allow_random_weights: bool = False, seed: int = 0) -> Sam2EntitySegmentor:
    """The ``sam2_amg`` proposer of ``config``: the SAM2 model of ``config.propagate`` (size,
    checkpoint from the model store or a mounted path, input size) on ``propose.device``."""
    from tasks.backends.sam2_propagator import load_model

    pc, pp = config.propose, config.propagate
    device = resolve_device(pc.device, "propose.device")
    amp = autocast_dtype(pc.autocast, device)
    model = load_model(pp.sam2_model, image_size=pp.sam2_image_size, device=device, checkpoint=pp.sam2_checkpoint,
                       checkpoint_sha256=pp.sam2_checkpoint_sha256, store=store,
                       allow_random_weights=allow_random_weights, seed=seed)
    return Sam2EntitySegmentor(
        model, device=device, amp_dtype=amp, points_per_side=pc.amg_points_per_side,
        points_per_batch=pc.amg_points_per_batch, pred_iou_thresh=pc.amg_pred_iou_thresh,
        stability_thresh=pc.amg_stability_thresh, stability_offset=pc.amg_stability_offset,
        box_nms_iou=pc.amg_box_nms_iou, min_region_px_at_1024=pc.amg_min_region_px_at_1024)

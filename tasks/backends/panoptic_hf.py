"""Production panoptic voters: Mask2Former and OneFormer from ``transformers`` [M §1.2(b), issue 13 §2].

One voter per checkpoint (the method runs OneFormer on ADE20K, COCO-panoptic and Cityscapes; the
Mask2Former checkpoints of the same datasets are drop-in alternatives), each answering in its
dataset's label space (``ade20k``, ``coco_panoptic``, ``cityscapes``); the vote maps the names to
the master vocabulary through ``tasks/data/vocabulary.json``'s maps, exactly as for the CPU voters.
A voter is named ``{architecture}_{dataset}`` (``oneformer_ade20k``, ``mask2former_coco``, ...) and
listed in ``propose.panoptic_backends`` to switch it on; its weights are the model of the same name
in the model store (``python -m tasks models import DIR --name oneformer_ade20k``), resolved and
checksum-checked by :func:`tasks.models.model_path` — never fetched from a hub.

**Input and output sizes** [M §1.2(b)]: each seam-aware tile is resized to
``propose.panoptic_input_width`` (640) wide, then the checkpoint's own image processor applies the
model's test-time resize and normalisation (as the method's detectron2 predictor does). The mask
logits come back at a quarter of the model input; they are upsampled (bilinear) to the model input,
cropped to the image (the batch padding removed), resized (bilinear) to the 640-wide image, merged
into a panoptic map there, and that map is brought back to the tile size with nearest neighbour —
exactly the tile's ``(h, w)``.

**Panoptic merging** is detectron2's MaskFormer/OneFormer ``panoptic_inference`` (the method's
OneFormer predictor): queries whose best class is not "no object" and scores above
``panoptic_score_thresh`` compete pixel-wise by score x mask probability; a query keeps its pixels
when they are >= ``panoptic_overlap_thresh`` of its own mask (prob >= 0.5); stuff queries of one
class are one segment. ``transformers``' ``post_process_panoptic_segmentation`` does the same but
resizes through torchvision, which cannot be installed beside this torch (and is ~20 lines here).

**Label maps are checked at load**: every class of the checkpoint (``config.id2label``) must have an
entry in its space's map, and every entry must name a master-vocabulary class; otherwise
:class:`LabelMapError` (exit 2) before a tile is seen — a Cityscapes checkpoint imported under an
ADE20K voter's name, or a map edited to a class the vocabulary lacks, fails the stage at once
instead of silently voting ``None``.

No network: :func:`tasks.models.enforce_offline` runs before ``transformers`` is imported.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from tasks.backends.protocols import LabeledSegments
from tasks.backends.torch_runtime import autocast, autocast_dtype, resolve_device, run_batched
from tasks.errors import ConfigError, PermanentError
from tasks.models import ModelMismatch, enforce_offline, model_path
from tasks.vocabulary import Vocabulary, master

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VoterSpec:
    architecture: str      # transformers model_type
    loader: str            # the class that loads it (the manifest must name it)
    label_space: str       # a map of tasks/data/vocabulary.json


_ARCH = {
    "mask2former": "transformers.Mask2FormerForUniversalSegmentation",
    "oneformer": "transformers.OneFormerForUniversalSegmentation",
}
_DATASETS = {"ade20k": "ade20k", "coco": "coco_panoptic", "cityscapes": "cityscapes"}
# voter name -> what it loads and how it speaks; the model-store name is the voter name
VOTERS: dict[str, VoterSpec] = {
    f"{arch}_{ds}": VoterSpec(arch, loader, space)
    for arch, loader in _ARCH.items() for ds, space in _DATASETS.items()
}


class LabelMapError(ConfigError):
    """A voter's label map does not fit the checkpoint or the master vocabulary (exit 2)."""


class PanopticModelError(PermanentError):
    """The model folder cannot be loaded as the voter's architecture (a file missing or unreadable)."""


def check_label_map(voter: str, label_space: str, class_names: Sequence[str], vocab: Vocabulary) -> dict[str, str]:
    """The checkpoint-class -> vocabulary map of ``label_space``, checked both ways (see the module doc)."""
    mapping = vocab.maps.get(label_space)
    if not mapping:
        raise LabelMapError(f"voter {voter!r}: the vocabulary has no label map {label_space!r} (maps: "
                            f"{', '.join(sorted(vocab.maps)) or 'none'}); add it to tasks/data/vocabulary.json")
    outside = sorted({v for v in mapping.values() if v not in vocab})
    if outside:
        raise LabelMapError(f"voter {voter!r}: the label map {label_space!r} names {len(outside)} class(es) outside "
                            f"the master vocabulary: {', '.join(map(repr, outside[:8]))}; map them to vocabulary "
                            "classes in tasks/data/vocabulary.json (the vocabulary is closed, M §6 row 3)")
    unmapped = [n for n in class_names if n not in mapping]
    if unmapped:
        raise LabelMapError(f"voter {voter!r}: {len(unmapped)} of the checkpoint's {len(class_names)} classes have no "
                            f"entry in the {label_space!r} label map (e.g. {', '.join(map(repr, unmapped[:5]))}): the "
                            f"model imported as {voter!r} is not a {label_space} checkpoint; import the right one "
                            f"with `python -m tasks models import DIR --name {voter}`")
    return {n: mapping[n] for n in class_names}


def panoptic_merge(class_logits: torch.Tensor, mask_logits: torch.Tensor, *, score_thresh: float,
                   overlap_thresh: float, stuff_labels: set[int]) -> tuple[torch.Tensor, list[tuple[int, int, float]]]:
    """detectron2 MaskFormer/OneFormer ``panoptic_inference`` for one image.

    ``class_logits`` (Q, C + 1) with "no object" last, ``mask_logits`` (Q, h, w) at the output
    size. Returns an int32 (h, w) segment map (0 = none) and ``(segment id, class id, score)`` per
    segment."""
    num_classes = class_logits.shape[-1] - 1
    scores, labels = F.softmax(class_logits.float(), dim=-1).max(-1)
    keep = (labels != num_classes) & (scores > score_thresh)
    h, w = mask_logits.shape[-2:]
    if not bool(keep.any()):
        return torch.zeros((h, w), dtype=torch.int32, device=mask_logits.device), []
    scores, labels = scores[keep], labels[keep]
    masks = mask_logits[keep].float().sigmoid()
    q = masks.shape[0]
    owner = (scores[:, None, None] * masks).argmax(0).flatten()           # (h*w,) winning query
    own = (masks >= 0.5).reshape(q, -1)                                  # each query's own mask
    claimed = torch.bincount(owner, minlength=q)                         # pixels it wins
    original = own.sum(1)                                                # pixels of its own mask
    valid = own.gather(0, owner[None])[0]                                # the winner's mask covers it
    kept = torch.bincount(owner[valid], minlength=q)                     # won and inside its mask
    lut = torch.zeros(q, dtype=torch.int32, device=mask_logits.device)
    segments: list[tuple[int, int, float]] = []
    stuff_ids: dict[int, int] = {}
    for k, (cls, area, orig, inside) in enumerate(zip(labels.tolist(), claimed.tolist(), original.tolist(),
                                                      kept.tolist())):
        if area == 0 or orig == 0 or inside == 0 or area / orig < overlap_thresh:
            continue
        if cls in stuff_ids:
            lut[k] = stuff_ids[cls]
            continue
        sid = len(segments) + 1
        segments.append((sid, int(cls), round(float(scores[k]), 6)))
        if cls in stuff_labels:
            stuff_ids[cls] = sid
        lut[k] = sid
    seg = torch.where(valid, lut[owner], 0).reshape(h, w).to(torch.int32)
    return seg, segments


def _resize_to_width(image: np.ndarray, width: int) -> np.ndarray:
    h, w = image.shape[:2]
    if w == width:
        return image
    height = max(1, int(round(h * width / w)))
    interp = cv2.INTER_AREA if width < w else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interp)


class HFPanopticVoter:
    """A Mask2Former or OneFormer checkpoint as a :class:`~tasks.backends.protocols.PanopticSegmentor`."""

    tiled = True    # learned on perspective photos: runs on the seam-aware tiles [M §1.2(a)]

    def __init__(self, name: str, *, store=None, cache_dir: str | Path | None = None, folder: str | Path | None = None,
                 vocab: Vocabulary | None = None, device: str = "auto", autocast_mode: str = "off",
                 input_width: int = 640, score_thresh: float = 0.8, overlap_thresh: float = 0.8,
                 batch_tiles: int = 3):
        if name not in VOTERS:
            raise ConfigError(f"unknown panoptic voter {name!r}; available: {', '.join(sorted(VOTERS))}")
        spec = VOTERS[name]
        self.name = name
        self.label_space = spec.label_space
        self.architecture = spec.architecture
        self.input_width = int(input_width)
        self.score_thresh = float(score_thresh)
        self.overlap_thresh = float(overlap_thresh)
        self.batch_tiles = max(1, int(batch_tiles))
        self.device = resolve_device(device)
        self.amp = autocast_dtype(autocast_mode, self.device)
        enforce_offline()   # before transformers is imported (issue 13 §3)
        self.folder = Path(folder) if folder is not None else model_path(name, store=store, cache_dir=cache_dir,
                                                                         loader=spec.loader)
        self._check_architecture()
        self.model, self.processor, self._tokenizer = self._load()
        self.model = self.model.to(self.device).eval()
        id2label = {int(k): str(v).strip() for k, v in self.model.config.id2label.items()}
        self.class_names = [id2label[i] for i in sorted(id2label)]
        vocab = vocab or master()
        mapped = check_label_map(name, self.label_space, self.class_names, vocab)
        # stuff classes (of the vocabulary) are one segment per class, as panoptic_inference does
        self.stuff_labels = {i for i, n in id2label.items() if not vocab.get(mapped[n]).isthing}
        self._task_inputs: torch.Tensor | None = None

    # -- loading --------------------------------------------------------------------------------
    def _check_architecture(self) -> None:
        cfg = self.folder / "config.json"
        try:
            data = json.loads(cfg.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PanopticModelError(f"model folder {self.folder} of voter {self.name!r} has no config.json: it is "
                                     f"not a transformers checkpoint; import the {self.architecture} snapshot "
                                     f"with `python -m tasks models import DIR --name {self.name}`") from None
        except (OSError, ValueError) as exc:
            raise PanopticModelError(f"{cfg} of voter {self.name!r} cannot be read ({exc}); re-import the "
                                     "model") from exc
        have = data.get("model_type")
        if have != self.architecture:
            raise ModelMismatch(f"voter {self.name!r} loads a {self.architecture} checkpoint but {self.folder} holds "
                                f"a {have or 'unknown'} model (config.json model_type): the wrong folder was "
                                f"imported under {self.name!r}, or the configuration names the wrong voter")

    def _load(self):
        import transformers

        try:
            if self.architecture == "mask2former":
                from transformers.models.mask2former.image_processing_pil_mask2former import (
                    Mask2FormerImageProcessorPil as Processor,
                )

                model = transformers.Mask2FormerForUniversalSegmentation.from_pretrained(self.folder)
                return model, Processor.from_pretrained(self.folder), None
            from transformers.models.oneformer.image_processing_pil_oneformer import (
                OneFormerImageProcessorPil as Processor,
            )

            model = transformers.OneFormerForUniversalSegmentation.from_pretrained(self.folder)
            # class_info_file names a metadata JSON on the hub (shi-labs/oneformer_demo) that only
            # training uses; inference needs none of it, and nothing is fetched
            processor = Processor.from_pretrained(self.folder, class_info_file=None, repo_path=None)
            tokenizer = transformers.AutoTokenizer.from_pretrained(self.folder)
            return model, processor, tokenizer
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise PanopticModelError(f"voter {self.name!r} cannot load its {self.architecture} checkpoint from "
                                     f"{self.folder}: {exc}. Re-import the complete snapshot with "
                                     f"`python -m tasks models import DIR --name {self.name}`") from exc

    def _task(self, n: int) -> torch.Tensor:
        """OneFormer's task token: "the task is panoptic" tokenised to task_seq_len ids (padding
        zeroed), as ``OneFormerProcessor`` builds it; the model reads it through an MLP."""
        if self._task_inputs is None:
            length = int(self.model.config.task_seq_len)
            tok = self._tokenizer("the task is panoptic", padding="max_length", max_length=length, truncation=True)
            ids = torch.tensor(tok["input_ids"]) * torch.tensor(tok["attention_mask"])
            self._task_inputs = ids[None].to(self.device)
        return self._task_inputs.expand(n, -1)

    # -- inference ------------------------------------------------------------------------------
    def segment(self, image: np.ndarray) -> LabeledSegments:
        return self.segment_many([image])[0]

    def segment_many(self, images: Sequence[np.ndarray]) -> list[LabeledSegments]:
        """Tiles ``propose.panoptic_batch_tiles`` at a time (halved on CUDA out of memory)."""
        for im in images:
            if not (isinstance(im, np.ndarray) and im.ndim == 3 and im.shape[2] == 3 and im.dtype == np.uint8):
                raise ValueError(f"voter {self.name} takes RGB uint8 (h, w, 3) images, got "
                                 f"{getattr(im, 'dtype', type(im))} {getattr(im, 'shape', '')}")
        parts, self.batch_tiles = run_batched(list(images), self.batch_tiles, self._segment_batch,
                                              what=f"in panoptic voter {self.name}", device=self.device)
        return [seg for part in parts for seg in part]

    @torch.inference_mode()
    def _segment_batch(self, images: Sequence[np.ndarray]) -> list[LabeledSegments]:
        small = [np.ascontiguousarray(_resize_to_width(im, self.input_width)) for im in images]
        shapes = {s.shape for s in small}
        if len(shapes) > 1:   # padding would differ per image; tiles of a frame share one shape
            return [r for s, im in zip(small, images) for r in self._run([s], [im.shape[:2]])]
        return self._run(small, [im.shape[:2] for im in images])

    def _run(self, small: list[np.ndarray], tile_shapes: list[tuple[int, int]]) -> list[LabeledSegments]:
        enc = self.processor(images=small, return_tensors="pt")
        pixel_values = enc["pixel_values"].to(self.device)
        pixel_mask = enc["pixel_mask"].to(self.device)
        kwargs = {"pixel_values": pixel_values, "pixel_mask": pixel_mask}
        if self.architecture == "oneformer":
            kwargs["task_inputs"] = self._task(len(small))
        with autocast(self.device, self.amp):
            out = self.model(**kwargs)
        results = []
        in_h, in_w = pixel_values.shape[-2:]
        for i, (s, tile_hw) in enumerate(zip(small, tile_shapes)):
            valid_h = int(pixel_mask[i].any(dim=1).sum())
            valid_w = int(pixel_mask[i].any(dim=0).sum())
            cls = out.class_queries_logits[i].float()
            # only queries that can win are upsampled (a full-size map per query is 100s of MB)
            scores, labels = F.softmax(cls, dim=-1).max(-1)
            keep = (labels != cls.shape[-1] - 1) & (scores > self.score_thresh)
            masks = out.masks_queries_logits[i][keep].float()
            if masks.shape[0]:
                masks = F.interpolate(masks[None], size=(in_h, in_w), mode="bilinear", align_corners=False)
                masks = masks[..., :valid_h, :valid_w]
                masks = F.interpolate(masks, size=s.shape[:2], mode="bilinear", align_corners=False)[0]
            else:
                masks = torch.zeros((0, *s.shape[:2]), device=cls.device)
            seg, segments = panoptic_merge(cls[keep], masks, score_thresh=self.score_thresh,
                                           overlap_thresh=self.overlap_thresh, stuff_labels=self.stuff_labels)
            seg_np = seg.cpu().numpy()
            h, w = tile_hw
            if seg_np.shape != (h, w):
                seg_np = cv2.resize(seg_np, (w, h), interpolation=cv2.INTER_NEAREST)
            present = set(np.unique(seg_np).tolist())
            names = {sid: self.class_names[c] for sid, c, _ in segments if sid in present}
            scores_out = {sid: sc for sid, _, sc in segments if sid in present}
            results.append(LabeledSegments(seg_np.astype(np.int32), names, scores_out))
        return results

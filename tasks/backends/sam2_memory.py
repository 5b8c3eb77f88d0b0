"""SAM2's memory bank, kept bounded: a streaming engine around ``SAM2Base.track_step``.

Why not the stock ``SAM2VideoPredictor``: ``init_state`` loads every frame of the video
(3 x S x S float32 each, 12.6 MB at S=1024) and ``propagate_in_video`` keeps every frame's
output in ``output_dict_per_obj[...]["non_cond_frame_outputs"]`` for ever, so memory grows
with the video (40-80 GB of GPU memory for 1-4 min clips, sam2#196). Yet tracking frame ``t``
reads only

* the conditioning frames (those with a prompt; at most ``max_cond_frames_in_attn`` of them,
  the temporally closest),
* the memory features of the last ``num_maskmem - 1`` frames (``memory_temporal_stride_for_eval``
  apart; stride 1 in every released config), and
* the object pointers (one 256-float vector per frame) of the last ``max_obj_ptrs_in_encoder - 1``
  frames

(``SAM2Base._prepare_memory_conditioned_features``). :class:`ObjectMemory` keeps exactly that
and evicts everything else after every frame, so the tracking result is the stock predictor's
(the tests compare both on the same weights) while the state stays at

    per object: <= max_cond conditioning entries + (num_maskmem - 1) full entries
                + (max_obj_ptrs - num_maskmem) pointer-only entries

whatever the video length. This is the pattern of CVAT's SAM2 tracker agent (which keeps the
conditioning frame + ``num_maskmem`` outputs); unlike it we also keep the older object pointers
(1 KB each) because the model attends to 15 of them, so dropping them would change results.

Only what the memory attention reads is stored per entry: the memory features (bfloat16, as the
stock predictor stores them) and the object pointer; the positional encoding of the memory is
the same for every frame and object and is kept once (:attr:`Sam2Stream.maskmem_pos_enc`).
Predicted masks are returned to the caller, never stored.

Objects are batched: objects whose memory entries sit on the same frames run through
``track_step`` together (one memory-attention pass for the batch instead of one per object;
time per frame is E + M*n in SAM2, sam2#367), which is numerically the per-object computation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class MemorySpec:
    """Which past frames SAM2 reads when it tracks a frame (the model's own settings)."""

    num_maskmem: int
    temporal_stride: int
    use_obj_ptrs: bool
    max_obj_ptrs: int
    max_cond_frames: int

    @classmethod
    def of(cls, model, max_cond_frames: int) -> MemorySpec:
        # a model restricted to fewer conditioning frames in attention never reads more
        in_attn = int(getattr(model, "max_cond_frames_in_attn", -1))
        keep = max_cond_frames if in_attn < 1 else min(max_cond_frames, in_attn)
        return cls(
            num_maskmem=int(model.num_maskmem),
            temporal_stride=max(1, int(model.memory_temporal_stride_for_eval)),
            use_obj_ptrs=bool(model.use_obj_ptrs_in_encoder),
            max_obj_ptrs=int(model.max_obj_ptrs_in_encoder),
            max_cond_frames=max(1, int(keep)),
        )

    def maskmem_frames(self, t: int) -> set[int]:
        """Frames whose memory features tracking frame ``t`` reads (forward tracking), as in
        ``_prepare_memory_conditioned_features``."""
        out: set[int] = set()
        r = self.temporal_stride
        for t_pos in range(1, self.num_maskmem):
            t_rel = self.num_maskmem - t_pos
            if t_rel == 1:
                out.add(t - 1)
            else:
                out.add(((t - 2) // r) * r - (t_rel - 2) * r)
        return out

    def pointer_frames(self, t: int) -> set[int]:
        """Frames whose object pointer tracking frame ``t`` reads."""
        if not self.use_obj_ptrs:
            return set()
        return {t - d for d in range(1, self.max_obj_ptrs)}

    @property
    def bound(self) -> dict[str, int]:
        """The most entries one object can hold, by kind."""
        full = self.num_maskmem - 1
        ptr_only = max(0, self.max_obj_ptrs - 1 - full) if self.use_obj_ptrs else 0
        return {"cond": self.max_cond_frames, "full": full, "pointer_only": ptr_only}


class Entry:
    """One frame's memory of one object: what the memory attention reads, nothing else."""

    __slots__ = ("features", "obj_ptr")

    def __init__(self, features: torch.Tensor | None, obj_ptr: torch.Tensor):
        self.features = features  # (1, mem_dim, S/16, S/16) bfloat16; None once pointer-only
        self.obj_ptr = obj_ptr    # (1, hidden_dim)

    def nbytes(self) -> int:
        n = self.obj_ptr.numel() * self.obj_ptr.element_size()
        if self.features is not None:
            n += self.features.numel() * self.features.element_size()
        return n


class ObjectMemory:
    """The bounded memory bank of one object."""

    __slots__ = ("cond", "non_cond")

    def __init__(self) -> None:
        self.cond: dict[int, Entry] = {}      # frame index -> entry, oldest first
        self.non_cond: dict[int, Entry] = {}

    def add_cond(self, t: int, entry: Entry, spec: MemorySpec) -> None:
        """A prompt on frame ``t``. Only the ``max_cond_frames`` most recent prompts are kept:
        they are the temporally closest ones, which SAM2 itself prefers when it must choose
        (``select_closest_cond_frames``) and the most up-to-date view of the object."""
        self.non_cond.pop(t, None)  # a prompted frame is conditioning only (as in SAM2's preflight)
        self.cond.pop(t, None)
        self.cond[t] = entry
        while len(self.cond) > spec.max_cond_frames:
            del self.cond[next(iter(self.cond))]

    def add_non_cond(self, t: int, entry: Entry) -> None:
        if t not in self.cond:
            self.non_cond[t] = entry

    def evict(self, next_t: int, spec: MemorySpec) -> None:
        """Forget what tracking frame ``next_t`` (and so any later frame) will not read."""
        full = spec.maskmem_frames(next_t)
        ptrs = spec.pointer_frames(next_t)
        for t in list(self.non_cond):
            e = self.non_cond[t]
            if t in full:
                continue
            if t in ptrs:
                e.features = None  # the pointer is still read, the 64-channel map no longer
            else:
                del self.non_cond[t]

    def signature(self) -> tuple:
        """Objects with equal signatures read the same frames and can be batched."""
        return (tuple(self.cond), tuple((t, e.features is not None) for t, e in self.non_cond.items()))

    def counts(self) -> dict[str, int]:
        full = sum(1 for e in self.non_cond.values() if e.features is not None)
        return {"cond": len(self.cond), "full": full, "pointer_only": len(self.non_cond) - full}

    def nbytes(self) -> int:
        return sum(e.nbytes() for e in self.cond.values()) + sum(e.nbytes() for e in self.non_cond.values())


@dataclass
class FrameFeatures:
    """The image encoder's output for one frame (batch 1), ready for ``track_step``."""

    backbone_fpn: list[torch.Tensor]
    vision_pos_enc: list[torch.Tensor]

    def expanded(self, model, batch: int):
        """(vision_feats, vision_pos_embeds, feat_sizes) for ``batch`` objects, as the stock
        predictor's ``_get_image_feature`` prepares them."""
        out = {"backbone_fpn": [f.expand(batch, -1, -1, -1) for f in self.backbone_fpn],
               "vision_pos_enc": [p.expand(batch, -1, -1, -1) for p in self.vision_pos_enc]}
        _, feats, pos, sizes = model._prepare_backbone_features(out)
        return feats, pos, sizes


def encode_frames(model, images: torch.Tensor) -> list[FrameFeatures]:
    """Run the image encoder on a batch of normalised S x S images -> one entry per frame."""
    out = model.forward_image(images)
    return [FrameFeatures([f[i:i + 1] for f in out["backbone_fpn"]],
                          [p[i:i + 1] for p in out["vision_pos_enc"]])
            for i in range(images.shape[0])]


class Sam2Stream:
    """Per-object bounded memory + SAM2's per-frame machinery. No notion of ERP or id maps:
    it takes model-resolution masks and returns model-resolution (S/4) mask logits.

    Every public method must run under ``torch.inference_mode()`` (the caller's job, so that a
    whole frame is one inference block). A frame is transactional: memory changes are applied
    only once every object of the frame has been computed, so an exception (e.g. CUDA out of
    memory) in the middle leaves the state as it was and the frame can be retried.
    """

    def __init__(self, model, max_cond_frames: int = 3):
        self.model = model
        self.spec = MemorySpec.of(model, max_cond_frames)
        self.objects: dict[int, ObjectMemory] = {}
        self.maskmem_pos_enc: list[torch.Tensor] | None = None  # the same for every frame and object

    def _num_frames(self, t: int) -> int:
        """What to pass as ``num_frames``: the model caps the pointers at min(num_frames,
        max_obj_ptrs) and skips frames >= num_frames. The length of a stream is unknown, so
        at least t + 1 frames and max_obj_ptrs: the stock predictor's values on any video of at
        least max_obj_ptrs frames."""
        return max(int(t) + 1, self.spec.max_obj_ptrs)

    # -- state ---------------------------------------------------------------------------------
    def drop(self, obj_ids: Iterable[int]) -> None:
        for k in obj_ids:
            self.objects.pop(int(k), None)

    def evict(self, next_t: int) -> None:
        for mem in self.objects.values():
            mem.evict(next_t, self.spec)

    def stats(self) -> dict:
        """Sizes of the state, for tests and benchmarks: the largest count per object by kind,
        the number of objects and the bytes held."""
        per = [m.counts() for m in self.objects.values()]
        return {
            "objects": len(self.objects),
            "max_cond": max((c["cond"] for c in per), default=0),
            "max_full": max((c["full"] for c in per), default=0),
            "max_pointer_only": max((c["pointer_only"] for c in per), default=0),
            "max_entries": max((c["cond"] + c["full"] + c["pointer_only"] for c in per), default=0),
            "bytes": sum(m.nbytes() for m in self.objects.values()),
        }

    def _pos_enc(self, pos: list[torch.Tensor]) -> None:
        if self.maskmem_pos_enc is None:
            self.maskmem_pos_enc = [x[0:1].clone() for x in pos]

    # -- prompts -------------------------------------------------------------------------------
    def add_masks(self, t: int, feats: FrameFeatures, masks: dict[int, torch.Tensor]) -> None:
        """Mask prompts on frame ``t`` (the equivalent of ``add_new_mask`` + the memory encoding
        of ``propagate_in_video_preflight``): ``masks`` maps object id -> (S, S) float {0, 1}.
        Each becomes a conditioning entry of its object; new ids become new objects."""
        if not masks:
            return
        m = self.model
        ids = list(masks)
        mask_inputs = torch.stack([masks[k] for k in ids])[:, None].float()   # (B, 1, S, S)
        vf, vp, sizes = feats.expanded(m, len(ids))
        out = m.track_step(frame_idx=t, is_init_cond_frame=True, current_vision_feats=vf,
                           current_vision_pos_embeds=vp, feat_sizes=sizes, point_inputs=None,
                           mask_inputs=mask_inputs, output_dict={"cond_frame_outputs": {}, "non_cond_frame_outputs": {}},
                           num_frames=self._num_frames(t), track_in_reverse=False, run_mem_encoder=False)
        # the stock predictor encodes the memory of a prompted frame from the low-res output,
        # upsampled and binarised ("is_mask_from_pts"), after the user finished prompting
        high = F.interpolate(out["pred_masks"], size=(m.image_size, m.image_size), mode="bilinear",
                             align_corners=False)
        features, pos = m._encode_new_memory(current_vision_feats=vf, feat_sizes=sizes, pred_masks_high_res=high,
                                             object_score_logits=out["object_score_logits"], is_mask_from_pts=True)
        self._pos_enc(pos)
        features = features.to(torch.bfloat16)
        for i, k in enumerate(ids):
            mem = self.objects.setdefault(int(k), ObjectMemory())
            mem.add_cond(t, Entry(features[i:i + 1].clone(), out["obj_ptr"][i:i + 1].clone()), self.spec)

    # -- tracking ------------------------------------------------------------------------------
    def _output_dict(self, group: Sequence[ObjectMemory]) -> dict:
        """The ``output_dict`` ``track_step`` expects, for a batch of objects with one signature."""
        b = len(group)
        pos = [x.expand(b, -1, -1, -1) for x in self.maskmem_pos_enc] if self.maskmem_pos_enc else None

        def merged(entries: list[Entry]) -> dict:
            feats = entries[0].features
            return {
                "maskmem_features": None if feats is None else torch.cat([e.features for e in entries]),
                "maskmem_pos_enc": pos,
                "obj_ptr": torch.cat([e.obj_ptr for e in entries]),
            }

        first = group[0]
        return {
            "cond_frame_outputs": {t: merged([g.cond[t] for g in group]) for t in first.cond},
            "non_cond_frame_outputs": {t: merged([g.non_cond[t] for g in group]) for t in first.non_cond},
        }

    def track(self, t: int, feats: FrameFeatures, obj_ids: Iterable[int] | None = None) -> dict[int, torch.Tensor]:
        """Track frame ``t`` (after the frames already in memory) for every object (or
        ``obj_ids``): returns id -> low-res mask logits (1, S/4, S/4) and stores the frame's
        memory. Objects predicted absent get SAM2's NO_OBJ_SCORE logits (-1024)."""
        m = self.model
        ids = sorted(self.objects) if obj_ids is None else sorted(int(k) for k in obj_ids)
        groups: dict[tuple, list[int]] = {}
        for k in ids:
            groups.setdefault(self.objects[k].signature(), []).append(k)
        results: dict[int, torch.Tensor] = {}
        pending: list[tuple[int, Entry]] = []
        for members in groups.values():
            mems = [self.objects[k] for k in members]
            vf, vp, sizes = feats.expanded(m, len(members))
            out = m.track_step(frame_idx=t, is_init_cond_frame=False, current_vision_feats=vf,
                               current_vision_pos_embeds=vp, feat_sizes=sizes, point_inputs=None, mask_inputs=None,
                               output_dict=self._output_dict(mems), num_frames=self._num_frames(t),
                               track_in_reverse=False, run_mem_encoder=True)
            self._pos_enc(out["maskmem_pos_enc"])
            features = out["maskmem_features"].to(torch.bfloat16)
            for i, k in enumerate(members):
                results[k] = out["pred_masks"][i]
                pending.append((k, Entry(features[i:i + 1].clone(), out["obj_ptr"][i:i + 1].clone())))
        for k, entry in pending:  # commit only once the whole frame succeeded
            self.objects[k].add_non_cond(t, entry)
        return results

"""The small protocols behind which every model sits (docs/ARCHITECTURE.md, "Model backends").

Production backends (SAM2, OneFormer, an entity segmentor, a VLM endpoint) and the CPU backends
implement the same protocols, so a stage never knows which one it drives.

Segmentors return *label maps* rather than lists of masks: an int32 image where each non-zero
value is one segment. Panoptic outputs are non-overlapping by definition, and the method makes
entity masks exclusive anyway [M §1.2(b)], so nothing is lost, and memory stays at one image per
tile instead of one image per mask (hundreds of masks per 2048x1024 frame).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class LabeledSegments:
    """A label map plus what each label means."""

    labels: np.ndarray               # int32 (H, W), 0 = no segment
    names: dict[int, str | None]     # segment id -> class name in the source's label space (None: no class)
    scores: dict[int, float] = field(default_factory=dict)


@runtime_checkable
class EntitySegmentor(Protocol):
    """Class-agnostic segmentation of one image (an ERP tile). CropFormer in the method."""

    name: str

    def segment(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 (h, w, 3) -> int32 label map (h, w), 0 = no entity, segments exclusive."""
        ...


@runtime_checkable
class PanopticSegmentor(Protocol):
    """Panoptic/semantic segmentation with class names in ``label_space`` (a vocabulary map name
    such as ``coco_panoptic`` or ``cityscapes``, or ``master``). OneFormer in the method."""

    name: str
    label_space: str
    # True: run on the seam-aware tiles and merge (the method's way for learned models);
    # False: the backend is seam-aware itself and runs on the whole ERP frame.
    tiled: bool

    def segment(self, image: np.ndarray) -> LabeledSegments: ...


@dataclass(frozen=True)
class Candidate:
    """A label hypothesis for one mask: free text, where it came from, and how much it covers."""

    text: str
    source: str
    label_space: str
    support: float  # in [0, 1]


@dataclass
class VerifyRequest:
    mask_id: int
    candidates: list[Candidate]
    # distortion-corrected view centred on the mask and the masked crop (RGB uint8), when the
    # backend looks at pixels (VLM); CPU text backends ignore them
    view: np.ndarray | None = None
    crop: np.ndarray | None = None
    crop_hash: str | None = None


@dataclass
class Verdict:
    label: str                  # a master-vocabulary name or "unknown"
    confidence: float
    backend: str
    thing_or_stuff: str | None = None
    raw: str | None = None      # what the backend answered, for provenance
    error: str | None = None    # why the answer was rejected (-> "unknown" + QA flag)

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@runtime_checkable
class LabelVerifier(Protocol):
    name: str

    def verify(self, requests: list[VerifyRequest]) -> list[Verdict]:
        """One verdict per request, in order. Never raises for a bad answer: it returns
        ``unknown`` with ``error`` set."""
        ...


@runtime_checkable
class Propagator(Protocol):
    """Carries an id map from frame to frame. ``reset`` (re)starts from a known id map."""

    name: str

    def reset(self, frame: np.ndarray, idmap: np.ndarray) -> None: ...

    def forget(self, ids: Iterable[int]) -> None:
        """Stop following these objects, hidden ones included (their ids were merged away)."""
        ...

    def step(self, frame: np.ndarray) -> np.ndarray:
        """Next frame in -> its uint16 id map out."""
        ...

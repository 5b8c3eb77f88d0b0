"""The Semantic- and Distortion-aware Refinement on one frame [M §1.2(a)-(d)].

``propose_frame`` (:mod:`tasks.labeling.proposals`) -> ``label_entities``
(:mod:`tasks.labeling.vote`) -> ``fuse`` (:mod:`tasks.labeling.fuse`) is the method's initial
annotation of a keyframe: entity proposals on seam-aware tiles merged back, labels by
cross-model vote with the verifier for the rest, exclusive masks, stuff classes merged into one
object each. The ``propose``, ``verify`` and ``sdr`` stages run these steps one by one (with
their outputs in the store); ``refine`` runs them all at once on the frames it re-annotates.
"""

from __future__ import annotations

import numpy as np

from tasks.backends import Backends
from tasks.config import PipelineConfig
from tasks.labeling.fuse import FrameObjects, absorb_fragments, fuse
from tasks.labeling.proposals import POLAR_VIEWS, FrameProposals, add_polar_views, propose_frame
from tasks.labeling.vote import EntityLabel, label_entities

__all__ = ["POLAR_VIEWS", "EntityLabel", "FrameObjects", "FrameProposals", "absorb_fragments", "add_polar_views",
           "annotate_frame", "fuse", "label_entities", "propose_frame"]


def annotate_frame(frame: np.ndarray, config: PipelineConfig, backends: Backends) -> FrameObjects:
    """The whole SDR on one frame (used by refine on the frames it re-annotates)."""
    props = propose_frame(frame, config, backends)
    labels, lstats = label_entities(props, config, backends, frame=frame)
    objs = fuse(props, labels, config, frame.shape[1])
    objs.stats.update(lstats)
    return objs

"""The Semantic- and Distortion-aware Refinement on one frame [M §1.2(a)-(d)].

``propose_frame`` (:mod:`tasks.labeling.proposals`) -> ``label_entities``
(:mod:`tasks.labeling.vote`) -> ``fuse`` (:mod:`tasks.labeling.fuse`) is the method's initial
annotation of a keyframe: entity proposals on seam-aware tiles merged back, labels by
cross-model vote with the verifier for the rest, exclusive masks, stuff classes merged into one
object each. The ``propose``, ``verify`` and ``sdr`` stages run these steps one by one (with
their outputs in the store); the tracking pass runs them all at once on the frames it
re-annotates (:func:`annotate_frame`).
"""

from __future__ import annotations

import cv2
import numpy as np

from tasks.backends import Backends
from tasks.config import PipelineConfig
from tasks.geometry.camera_motion import rotation_angle_deg
from tasks.geometry.erp import check_erp, lonlat_axes
from tasks.geometry.remap import apply_table, erp_table, grid_directions
from tasks.geometry.rotation import check_rotation
from tasks.labeling.fuse import FrameObjects, absorb_fragments, fuse
from tasks.labeling.proposals import POLAR_VIEWS, FrameProposals, add_polar_views, propose_frame
from tasks.labeling.vote import EntityLabel, inherit_labels, label_entities

__all__ = ["POLAR_VIEWS", "EntityLabel", "FrameObjects", "FrameProposals", "absorb_fragments", "add_polar_views",
           "Annotator", "annotate_frame", "fuse", "label_entities", "propose_frame"]


def annotate_frame(frame: np.ndarray, config: PipelineConfig, backends: Backends,
                   orientation: np.ndarray | None = None, prior: np.ndarray | None = None,
                   prior_labels: dict[int, EntityLabel] | None = None) -> FrameObjects:
    """The whole SDR on one frame (used by the tracking pass on the frames it re-annotates).

    ``orientation`` is the camera motion of this frame relative to the reference frame (frame 0):
    the content rotation ``R`` with "what frame 0 showed at ``v`` this frame shows at ``R @ v``"
    (the tracking pass's accumulated camera rotation, ``camera.json``). With
    ``propose.derotate`` the SDR runs on the frame turned back to the reference orientation and
    its id map is turned forward by ``R``: the classical proposers and voters are not
    rotation-equivariant (the region graph's merge order, the voters' latitude prior, the
    k-means), so a refresh made in the frame's own orientation re-cut the same still scene
    differently from frame 0 under pitch and roll (issue 10: auto rotation consistency
    0.84-0.90 on 360vot_0030, handheld congo equivariance 0.90 against 0.99 for the plain warp).

    ``prior``: an earlier entity map of the scene in the orientation the proposals are made in
    (the reference one when de-rotating): see :func:`tasks.labeling.proposals.propose_frame`.
    ``prior_labels`` (the prior's entity labels): a fresh entity that is a prior entity again
    keeps its label (:func:`tasks.labeling.vote.inherit_labels`). The result's ``entity`` and
    ``entity_labels`` are this frame's, in the orientation the proposals were made in.
    """
    R = _applied(orientation, config)
    if R is None:
        return _annotate(frame, config, backends, prior, prior_labels)
    objs = _annotate(_rotate(frame, R.T, "linear"), config, backends, prior, prior_labels)
    idmap = _rotate(objs.idmap, R, "nearest")
    present = set(np.unique(idmap).tolist()) - {0}
    return FrameObjects(idmap, {k: v for k, v in objs.objects.items() if k in present},
                        dict(objs.stats, derotated_deg=round(rotation_angle_deg(R), 3)), objs.entity,
                        objs.entity_labels)


def _applied(orientation: np.ndarray | None, config: PipelineConfig) -> np.ndarray | None:
    """The rotation :func:`annotate_frame` turns the frame back by, or None."""
    if orientation is None or not config.propose.derotate:
        return None
    R = check_rotation(orientation)
    return R if rotation_angle_deg(R) >= config.propose.derotate_min_deg else None


def _annotate(frame: np.ndarray, config: PipelineConfig, backends: Backends,
              prior: np.ndarray | None = None, prior_labels: dict[int, EntityLabel] | None = None) -> FrameObjects:
    looks = {e: (lab.color, lab.texture) for e, lab in (prior_labels or {}).items()}
    props = propose_frame(frame, config, backends, prior=prior, prior_looks=looks)
    labels, lstats = label_entities(props, config, backends, frame=frame)
    if prior is not None and prior_labels:
        pr = prior if prior.shape == props.entity.shape else cv2.resize(
            prior.astype(np.int32), props.entity.shape[::-1], interpolation=cv2.INTER_NEAREST)
        lstats["kept_labels"] = inherit_labels(props.entity, labels, pr, prior_labels,
                                               config.verify.keep_label_iou)
    objs = fuse(props, labels, config, frame.shape[1])
    objs.stats.update(lstats)
    objs.entity = props.entity
    objs.entity_labels = labels
    return objs


class Annotator:
    """The SDR of one tracking pass's refreshes (``annotate(rgb, orientation)``).

    Every refresh proposes in the reference orientation (:func:`annotate_frame`) with the
    previous keyframe's entities as the prior of its region merge, and its own entities become
    the next one's prior: on a still scene each refresh re-cuts it the way frame 0 was cut,
    while a changed scene still changes the cut (issue 10: the same real frame, re-encoded and
    turned back, agreed with itself at 0.54 and flipped a region of 0.66 of the sphere at every
    keyframe, and keeps the labels of the entities it finds again). ``first`` and
    ``first_labels`` are the keyframe's entity map (frame 0's orientation) and entity labels
    from the ``sdr`` stage.
    """

    def __init__(self, config: PipelineConfig, first: np.ndarray | None = None,
                 first_labels: dict[int, EntityLabel] | None = None) -> None:
        self.config = config
        self._prior = first                      # entity map, in orientation self._prior_R
        self._labels = first_labels
        self._prior_R = np.eye(3)

    def __call__(self, rgb: np.ndarray, backends: Backends, orientation: np.ndarray | None = None,
                 new_scene: bool = False) -> FrameObjects:
        """The SDR of ``rgb`` whose content rotation from frame 0 is ``orientation``.
        ``new_scene`` (a cut): the earlier entities say nothing about this frame."""
        if new_scene:
            self._prior = self._labels = None
        R = _applied(orientation, self.config)
        made_in = np.eye(3) if R is not None or orientation is None else check_rotation(orientation)
        prior = self._prior
        if prior is not None:
            rel = made_in @ self._prior_R.T       # from the prior's orientation to this one's
            if rotation_angle_deg(rel) >= self.config.propose.derotate_min_deg:
                prior = _rotate(prior.astype(np.int32), rel, "nearest")
        objs = annotate_frame(rgb, self.config, backends, orientation=R, prior=prior, prior_labels=self._labels)
        if objs.entity is not None:
            self._prior, self._labels, self._prior_R = objs.entity, objs.entity_labels, made_in
        return objs


def _rotate(image: np.ndarray, R: np.ndarray, interpolation: str) -> np.ndarray:
    """``image`` with its content rotated by ``R`` (:func:`tasks.geometry.rotation.rotate_erp`
    without its table cache: every refresh has a new rotation, and cached tables would grow with
    the video instead of staying flat)."""
    h, w = check_erp(image)
    lon, lat = lonlat_axes(h, w)
    return apply_table(erp_table(*grid_directions(lon, lat, R), h, w, interpolation), image)

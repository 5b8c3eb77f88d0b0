"""Labels for the entities of one frame: cross-model vote, the verifier for the rest [M §1.2(c)-(d)]."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from tasks.backends import Backends
from tasks.backends.protocols import Candidate, Verdict, VerifyRequest
from tasks.config import PipelineConfig
from tasks.geometry.erp import row_solid_angles
from tasks.labeling.overlap import pair_stats
from tasks.labeling.proposals import FrameProposals
from tasks.vocabulary import UNKNOWN, Vocabulary, master


@dataclass
class EntityLabel:
    label: str
    how: str                 # "vote" | "verifier" | "none"
    confidence: float
    votes: dict = field(default_factory=dict)
    verdict: dict | None = None
    # The entity's look on the frame it was proposed on: mean CIELAB and std of lightness (8-bit
    # OpenCV Lab scale, as FrameProposals.entity_colors/entity_texture). It travels with the label
    # (verify -> sdr stage -> the tracking pass's Annotator) because the next refresh uses this
    # entity map as its merge prior, and a superpixel that no longer looks like its prior entity
    # (an object moved there) must not be held to that entity's cut [issue 10: seed-2 flower].
    color: list[float] | None = None
    texture: float | None = None

    def to_json(self) -> dict:
        d = {"label": self.label, "how": self.how, "confidence": self.confidence, "votes": self.votes,
             "verdict": self.verdict}
        if self.color is not None:
            d["color"] = self.color
            d["texture"] = self.texture
        return d

    @classmethod
    def from_json(cls, d: dict) -> EntityLabel:
        return cls(d["label"], d["how"], d["confidence"], d.get("votes", {}), d.get("verdict"), d.get("color"),
                   d.get("texture"))


def label_entities(
    props: FrameProposals, config: PipelineConfig, backends: Backends, vocab: Vocabulary | None = None,
    frame: np.ndarray | None = None,
) -> tuple[dict[int, EntityLabel], dict]:
    """Cross-model vote [M §1.2(c)], then the verifier for every entity the vote left open.

    ``frame`` (the RGB frame, any size) is needed by verifiers that look at pixels: each mask is
    shown as a perspective view centred on it and as a masked crop (:mod:`tasks.labeling.views`).
    """
    vocab = vocab or master()
    n = int(props.entity.max())
    votes: dict[int, dict] = {e: {} for e in range(1, n + 1)}
    candidates: dict[int, list[Candidate]] = {e: [] for e in range(1, n + 1)}
    for vname, seg in props.voters.items():
        space = props.spaces[vname]
        st = pair_stats(props.entity, seg.labels)
        iou, cov = st.iou, st.cover_a
        best: dict[int, tuple[float, int]] = {}
        for e, s, i, c in zip(st.a.tolist(), st.b.tolist(), iou.tolist(), cov.tolist()):
            name = seg.names.get(s)
            if name is not None and (i > config.verify.vote_iou or c >= config.verify.candidate_cover):
                candidates[e].append(Candidate(name, vname, space, round(max(i, c), 4)))
            if i > best.get(e, (0.0, 0))[0]:
                best[e] = (i, s)
        for e, (i, s) in best.items():
            name = seg.names.get(s)
            if i > config.verify.vote_iou and name is not None:
                votes[e][vname] = {"native": name, "label": vocab.canonical(name, source=space), "iou": round(i, 4)}
    labels: dict[int, EntityLabel] = {}
    pending: list[int] = []
    for e in range(1, n + 1):
        mapped = [v["label"] for v in votes[e].values()]
        if len(mapped) >= config.verify.min_votes and None not in mapped and len(set(mapped)) == 1:
            labels[e] = EntityLabel(mapped[0], "vote", 1.0, votes[e])
        else:
            pending.append(e)
    stats = {"entities": n, "accepted_by_vote": n - len(pending), "to_verifier": len(pending)}
    if pending and backends.verifier is not None:
        requests = [VerifyRequest(e, candidates[e]) for e in pending]
        if getattr(backends.verifier, "needs_images", False):
            if frame is None:
                raise ValueError(f"the {backends.verifier.name} verifier needs the frame to look at")
            _attach_views(requests, props, frame, config)
        verdicts = backends.verifier.verify(requests)
        for e, v in zip(pending, verdicts):
            labels[e] = EntityLabel(v.label, "verifier", v.confidence, votes[e], v.to_json())
        stats["verifier_calls"] = len(requests)
        stats["verifier_unknown"] = sum(1 for v in verdicts if v.label == UNKNOWN)
        stats["verifier_errors"] = sum(1 for v in verdicts if v.error)
    else:
        for e in pending:
            labels[e] = EntityLabel(UNKNOWN, "none", 0.0, votes[e],
                                    Verdict(UNKNOWN, 0.0, "none", error="no verifier configured").to_json())
    for e, lab in labels.items():
        lab.color, lab.texture = props.entity_colors.get(e), props.entity_texture.get(e)
    return labels, stats


def inherit_labels(entity: np.ndarray, labels: dict[int, EntityLabel], prior: np.ndarray,
                   prior_labels: dict[int, EntityLabel], min_iou: float) -> int:
    """A fresh entity that is an earlier keyframe's entity again (spherical IoU >= ``min_iou``
    with it, both maps in one orientation) keeps that entity's label, unless the fresh label was
    agreed by the vote and the earlier one was not. Changes ``labels`` in place (``how`` =
    ``"kept"``); returns how many changed.

    The verifier and the vote decide a large stuff region on IoUs near their 0.5 thresholds, so
    a re-encoded copy of the same still scene was named differently at a refresh: on the re-shot
    360VOT 0098 panorama a region of 0.29 of the sphere went from sky to water at the 2 s
    keyframe and rotation consistency fell from 0.99 to 0.65 on every later frame [issue 10].
    """
    h, w = entity.shape
    if prior.shape != entity.shape or not prior_labels:
        return 0
    wts = np.broadcast_to(row_solid_angles(h, w)[:, None], (h, w))
    st = pair_stats(entity.astype(np.int64), prior.astype(np.int64), weights=wts)
    kept = 0
    for e, p, iou in zip(st.a.tolist(), st.b.tolist(), st.iou.tolist()):
        old, new = prior_labels.get(p), labels.get(e)
        if iou < min_iou or old is None or new is None or old.label == new.label:
            continue
        if new.how == "vote" and old.how != "vote":
            continue
        labels[e] = EntityLabel(old.label, "kept", old.confidence, new.votes, old.verdict, new.color, new.texture)
        kept += 1
    return kept


def _attach_views(requests: list[VerifyRequest], props: FrameProposals, frame: np.ndarray,
                  config: PipelineConfig) -> None:
    from tasks.labeling.views import verifier_view

    h, w = props.entity.shape
    work = frame if frame.shape[1] == w else cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
    vc = config.verify
    for r in requests:
        r.view, r.crop, r.crop_hash = verifier_view(work, props.entity == r.mask_id, fov_deg=vc.view_fov_deg,
                                                     width=vc.view_width, height=vc.view_height)



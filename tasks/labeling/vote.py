"""Labels for the entities of one frame: cross-model vote, the verifier for the rest [M §1.2(c)-(d)]."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from tasks.backends import Backends
from tasks.backends.protocols import Candidate, Verdict, VerifyRequest
from tasks.config import PipelineConfig
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

    def to_json(self) -> dict:
        return {"label": self.label, "how": self.how, "confidence": self.confidence, "votes": self.votes,
                "verdict": self.verdict}

    @classmethod
    def from_json(cls, d: dict) -> EntityLabel:
        return cls(d["label"], d["how"], d["confidence"], d.get("votes", {}), d.get("verdict"))


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
            if name is not None and (i > config.verify.vote_iou or c >= 0.5):
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
    return labels, stats


def _attach_views(requests: list[VerifyRequest], props: FrameProposals, frame: np.ndarray,
                  config: PipelineConfig) -> None:
    from tasks.labeling.views import verifier_view

    h, w = props.entity.shape
    work = frame if frame.shape[1] == w else cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
    vc = config.verify
    for r in requests:
        r.view, r.crop, r.crop_hash = verifier_view(work, props.entity == r.mask_id, fov_deg=vc.view_fov_deg,
                                                     width=vc.view_width, height=vc.view_height)



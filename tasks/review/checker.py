"""The annotation checker [M §1.4, issue 15 §1]: a comment a reviewer can act on for every
flagged object or frame.

Rule-based by default, from the QA flags, the track table and one pass over the id maps (which
finds possible ID switches: two tracks of one class that trade places between two frames, or a
track that ends where another of its class begins). When the configured verifier is a VLM
(``verify.verifier=openai``), each comment about an object is rewritten by that model from the
rule's finding and the object's crop, through the verifier's own endpoint, key handling,
timeouts and retries (:meth:`tasks.backends.llm_verifier.OpenAIVerifier.comment`); an answer
that fails any check keeps the rule's comment, with the reason.
"""

from __future__ import annotations

import logging

import numpy as np

from tasks.formats import idmap as idmap_png
from tasks.labeling.tracks import tracks_from_json
from tasks.stages import runner
from tasks.video.framestore import decode_jpeg
from tasks.vocabulary import UNKNOWN

log = logging.getLogger(__name__)

# ID-switch rule: a track's mask at t covers at least this share (IoU) of another track's mask
# at t-1 while overlapping its own t-1 mask by less than the low bound [ours, issue 15 §1].
SWITCH_IOU = 0.5
SWITCH_OWN_IOU = 0.2


def _span(frames: list[list[int]]) -> str:
    parts = [f"{a}" if a == b else f"{a}–{b}" for a, b in frames[:4]]
    more = f" and {len(frames) - 4} more ranges" if len(frames) > 4 else ""
    return ("frame " if len(frames) == 1 and frames[0][0] == frames[0][1] else "frames ") + ", ".join(parts) + more


def candidates(provenance: dict) -> list[str]:
    """Names the models proposed for an object (votes, verifier's raw answer), most often first."""
    seen: dict[str, int] = {}
    for part in provenance.get("parts", []):
        for vote in (part.get("votes") or {}).values():
            name = vote.get("label") or vote.get("native")
            if name and name != UNKNOWN:
                seen[name] = seen.get(name, 0) + 1
        raw = (part.get("verdict") or {}).get("raw") or ""
        for item in raw.split(";"):
            name = item.split("@")[0].strip()
            if name and name != UNKNOWN and not name.startswith("{"):
                seen[name] = seen.get(name, 0) + 1
    return [k for k, _ in sorted(seen.items(), key=lambda kv: -kv[1])][:5]


def id_switches(idmaps, categories: dict[int, str]) -> list[dict]:
    """Possible ID switches, from consecutive id maps (an iterable)."""
    out: list[dict] = []
    prev = None
    for t, cur in enumerate(idmaps):
        if prev is not None:
            k = int(max(prev.max(initial=0), cur.max(initial=0))) + 1
            pair = np.bincount(prev.ravel().astype(np.int64) * k + cur.ravel(), minlength=k * k).reshape(k, k)
            a_prev, a_cur = pair.sum(1), pair.sum(0)
            ids = [i for i in range(1, k) if a_cur[i]]
            moved: dict[int, int] = {}
            for c in ids:
                p = int(np.argmax(pair[1:, c])) + 1    # the t-1 track this mask overlaps most
                if p == c or categories.get(p) != categories.get(c):
                    continue
                iou_other = pair[p, c] / (a_prev[p] + a_cur[c] - pair[p, c])
                own = pair[c, c] / (a_prev[c] + a_cur[c] - pair[c, c]) if a_prev[c] else 0.0
                if iou_other >= SWITCH_IOU and own < SWITCH_OWN_IOU:
                    moved[c] = p
            done = set()
            for c, p in sorted(moved.items()):
                if c in done:
                    continue
                if moved.get(p) == c:
                    out.append({"type": "id_switch", "frames": [[t, t]], "tracks": sorted((c, p)),
                                "text": f"possible ID switch at frame {t}: track {min(c, p)} and track {max(c, p)} swap"})
                    done |= {c, p}
                elif not a_cur[p]:
                    out.append({"type": "id_switch", "frames": [[t, t]], "tracks": [p, c],
                                "text": f"possible ID switch at frame {t}: track {p} ({categories.get(p)}) continues "
                                        f"as track {c}"})
                    done.add(c)
        prev = cur
    return out


def rule_comment(flag: dict, tracks: dict) -> str:
    tid = flag.get("track")
    tr = tracks.get(tid) if tid is not None else None
    what = f"track {tid} ({tr.category})" if tr is not None else (f"track {tid}" if tid is not None else "")
    frames = _span(flag.get("frames") or [[0, 0]])
    kind = flag.get("type")
    if kind == "unknown_label":
        names = candidates(tr.provenance) if tr is not None else []
        return (f"label unknown for track {tid} — candidates: {', '.join(names)}" if names else
                f"label unknown for track {tid} — no model named it ({flag.get('reason', 'no candidate')}); "
                "name it or delete the object")
    if kind == "short_track":
        return f"{what} is seen on {frames} only: a flicker to delete, or a real object to extend"
    if kind == "fragmented":
        return f"{what} falls into separate pieces on {frames}: two objects sharing one id? split or merge them"
    if kind == "coverage_dip":
        return f"coverage dip on {frames}: unlabeled regions remain; label what is missing"
    if kind == "seam_discontinuity":
        return f"object split at the seam on {frames}: give the pieces on both sides of the left/right border one id"
    if kind == "camera_motion":
        return (f"camera rotation could not be estimated on {frames} ({flag.get('reason')}): check that ids "
                "stay on their objects there")
    return f"{kind} on {frames}: {flag.get('message', 'check this')}"


def check_run(store, video_id: str, run: str, config=None, *, verifier=None) -> dict:
    """Every comment for one run: ``{"by": "rules"|"vlm", "comments": [...], "summary": str}``."""
    qa = runner.load_manifest(store, video_id, run, "qa")
    refine = runner.load_manifest(store, video_id, run, "refine")
    if qa is None or refine is None:
        from tasks.errors import MissingUpstream

        raise MissingUpstream(f"run {run} of video {video_id} has no QA output; run the pipeline up to qa first")
    flags = store.get_json(runner.output_key(store, qa, "flags"))["flags"]
    tracks = tracks_from_json(store.get_json(runner.output_key(store, refine, "tracks")))
    iprefix = runner.output_key(store, refine, "idmaps")
    n = int(qa["stats"]["frames"])
    comments = []
    for f in flags:
        c = {"type": f["type"], "frames": f.get("frames", []), "text": rule_comment(f, tracks), "by": "rules"}
        if f.get("track") is not None:
            c["track"] = f["track"]
        if f.get("crop"):
            c["crop"] = f["crop"]
        comments.append(c)
    cats = {k: t.category for k, t in tracks.items()}
    comments += [dict(c, by="rules") for c in
                 id_switches((idmap_png.decode_png(store.get_bytes(f"{iprefix}{t:05d}.png")) for t in range(n)), cats)]
    by = "rules"
    if verifier is None and config is not None and config.verify.verifier == "openai":
        from tasks.backends.llm_verifier import build_openai_verifier

        verifier = build_openai_verifier(config)
    if verifier is not None:
        by = "vlm"
        for c in comments:
            images = [decode_jpeg(store.get_bytes(c["crop"]))] if c.get("crop") else []
            text, error = verifier.comment(f"Automatic finding: {c['text']}.", images)
            if text is not None:
                c.update(rule_text=c["text"], text=text, by="vlm")
            else:
                c["vlm_error"] = error
                log.info("the VLM could not write a comment (%s); the rule's comment stays", error)
    counts: dict[str, int] = {}
    for c in comments:
        counts[c["type"]] = counts.get(c["type"], 0) + 1
    summary = (f"{len(comments)} comment(s) on video {video_id} run {run}: "
               + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) if comments else
               f"no comment on video {video_id} run {run}: nothing was flagged")
    return {"video_id": video_id, "run": run, "by": by, "summary": summary, "counts": counts, "comments": comments}

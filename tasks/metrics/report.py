"""Terminal rendering of an :func:`~tasks.metrics.evaluate.evaluate` result.

Works on the JSON-able dict alone (also after a round trip through a file), so a stored
``evaluation.json`` can be printed again without the annotations.
"""

from __future__ import annotations


def _num(x: float | None) -> str:
    return "   -  " if x is None else f"{x:6.4f}"


def _row(label: str, pair: dict) -> str:
    return f"  {label:<22} {_num(pair.get('planar'))}   {_num(pair.get('sphere'))}"


def _coverage_row(label: str, c: dict) -> str:
    return (f"  {label:<22} {_num(c['planar_mean'])}   {_num(c['sphere_mean'])}   "
            f"{_num(c['planar_min'])}   {_num(c['sphere_min'])}")


def format_report(result: dict) -> str:
    """A multi-line table: overall scores, things/stuff, tracking, coverage, then per object."""
    tol = result.get("boundary_tolerance", {})
    lines = [
        f"video {result['video_uid']}: {result['frames']} frames, {result['width']}x{result['height']}"
        + (f" (prediction's video {result['pred_video_uid']})" if "pred_video_uid" in result else ""),
        "",
        f"  {'':<22} {'planar':>6}   {'sphere':>6}",
        _row("J  (region IoU)", result["J"]),
        _row("F  (boundary)", result["F"]),
        _row("J&F", result["J&F"]),
    ]
    for name in ("things", "stuff"):
        group = result[name]
        lines.append(_row(f"J&F {name} (n={group['n']})", group["J&F"]))
    lines += [
        "",
        f"  ID switches: {result['id_switches']}    seam-crossing GT objects: {result['seam_objects']}"
        f"    split at the seam: {result['seam_split_objects']}",
        "",
        f"  {'coverage':<22} {'planar':>6}   {'sphere':>6}   {'p.min':>6}   {'s.min':>6}",
        _coverage_row("prediction", result["coverage"]["pred"]),
        _coverage_row("ground truth", result["coverage"]["gt"]),
        "",
        f"  {'gt':>5} {'category':<16} {'pred':>5} {'frames':>6}  {'J':>6} {'J sph':>6}  {'F':>6} {'F sph':>6}"
        f"  {'IDsw':>4}  seam",
    ]
    for o in result["objects"]:
        seam = ("split" if o["seam_split"] else "yes") if o["crosses_seam"] else ""
        pred = "-" if o["pred_track"] is None else str(o["pred_track"])
        lines.append(
            f"  {o['gt_track']:>5} {o['category'][:16]:<16} {pred:>5} {o.get('frames', 0):>6}  "
            f"{_num(o['J']['planar'])} {_num(o['J']['sphere'])}  {_num(o['F']['planar'])} {_num(o['F']['sphere'])}"
            f"  {o['id_switches']:>4}  {seam}"
        )
    if not result["objects"]:
        lines.append("  (the ground truth has no objects in this video)")
    unmatched = result.get("unmatched_pred_tracks") or []
    lines += [
        "",
        "  unmatched predicted tracks: " + (", ".join(str(t) for t in unmatched) if unmatched else "none"),
        "",
        "  J and F of an object average the frames where it or its matched prediction is present;",
        "  unmatched GT objects score 0. Matching: Hungarian on summed per-frame IoU.",
    ]
    if tol:
        lines.append(f"  Boundary tolerance: {tol['pixels']} px planar, {tol['degrees']} deg on the sphere "
                     "(solid-angle weighted, seam wrapped).")
    return "\n".join(lines)

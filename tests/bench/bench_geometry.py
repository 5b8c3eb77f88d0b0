"""Speed of the geometry core against py360convert, at equal output.

Operations (uint8 BGR frames, bilinear everywhere, same output size for both libraries):

* ``e2p``: ERP -> 1024 x 1024 perspective view, 90 deg horizontal FoV, centred at lon 30, lat 20.
  py360convert gets the field of view that puts its pixel centres exactly on ours
  (``tan(fov_py/2) = tan(45 deg) * 1023/1024``), so both compute the same image (``mad`` ~ 0).
* ``e2c``: ERP -> cubemap, face width W/4, py360convert's ``dice`` layout for both.
* ``c2e``: that cubemap -> ERP of the original size.
* ours only (py360convert has no counterpart): ``p2e`` (the 1024^2 view back onto the frame) and
  ``rotate`` (an arbitrary sphere rotation of the frame).

*cold* is the first call after both libraries' table caches are cleared (tables built, median of
3); *warm* is the steady state with cached tables (median of 20). ``mad`` is the mean absolute
difference of the two outputs in grey levels: ~0 where the pixel grids agree (``e2p``); for the
cubemap the libraries use different half-pixel conventions (see :mod:`tasks.geometry.cubemap`),
so a few grey levels there are the convention, not an error. ``remap_floor_ms`` is one bare
``cv2.remap`` with our cached table (the ERP sampling is one remap; py360convert 1.0.4 also caches
its tables and calls cv2.remap once per channel, so the warm gap is its per-channel padding and
splitting, bounded by what one remap costs).

Frames: the Pannellum example panorama from the shared data (``$LEADER360V_SHARED_DATA``, default
``../shared/data`` beside the repository) resized with INTER_AREA, or a synthetic sky/grass world
(:mod:`tasks.synth`) when it is absent.

    cd tests/bench && ../../.venv/bin/python bench_geometry.py
"""

from __future__ import annotations

import math
import os
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
from common import REPO, emit, machine

from tasks.geometry import cubemap, remap
from tasks.geometry import erp as erp_geometry
from tasks.geometry.cubemap import cubemap_to_erp, erp_to_cubemap
from tasks.geometry.perspective import PerspectiveView, erp_to_perspective, perspective_to_erp
from tasks.geometry.rotation import rotate_erp, rotation_matrix, rotation_table

SIZES = ((2048, 1024), (3840, 1920))
VIEW = 1024
FOV = 90.0
LON, LAT = 30.0, 20.0
COLD_REPEATS = 3
WARM_REPEATS = 20
PANO = "erp_images/pannellum_examplepano_4096x2048.jpg"


def shared_data() -> Path:
    return Path(os.environ.get("LEADER360V_SHARED_DATA", REPO.parent / "shared" / "data"))


def load_frames() -> tuple[dict[int, np.ndarray], str]:
    path = shared_data() / PANO
    img = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
    if img is not None:
        return {w: cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA) for w, h in SIZES}, str(path)
    from tasks.synth.background import BackgroundSpec, render_background

    spec = BackgroundSpec.random(np.random.default_rng(0))
    return {w: render_background(spec, h, w)[0] for w, h in SIZES}, "synthetic (tasks.synth background, seed 0)"


def clear_py360(py) -> None:
    u = py.utils
    u.EquirecSampler.from_perspective.cache_clear()
    u.EquirecSampler.from_cubemap.cache_clear()
    u.CubeFaceSampler.from_equirec.cache_clear()
    for fn in (u.xyzcube, u.equirect_uvgrid, u.equirect_facetype):
        fn.cache_clear()


def clear_all(py) -> None:
    remap.clear_cache()
    cubemap._atlas_border.cache_clear()
    erp_geometry._lonlat.cache_clear()
    if py is not None:
        clear_py360(py)


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t) * 1e3, out


def measure(ours, theirs, bare, py) -> dict:
    """Cold and warm medians of both libraries, their calls interleaved so that both see the same
    machine load (the benchmark may share its cores with other work)."""
    cold: dict[str, list[float]] = {"ours": [], "py": []}
    outs: dict[str, object] = {}
    for _ in range(COLD_REPEATS):
        for key, fn in (("ours", ours), ("py", theirs)):
            if fn is None:
                continue
            clear_all(py)
            ms, outs[key] = timed(fn)
            cold[key].append(ms)
    calls = {k: f for k, f in (("ours", ours), ("py", theirs), ("floor", bare)) if f is not None}
    for fn in calls.values():
        fn()
    warm: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(WARM_REPEATS):
        for key, fn in calls.items():
            warm[key].append(timed(fn)[0])
    med = {f"{k}_cold": statistics.median(v) for k, v in cold.items() if v}
    med.update({f"{k}_warm": statistics.median(v) for k, v in warm.items()})
    med["outputs"] = outs
    return med


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or a <= 0 else round(b / a, 2)


def bare_remap(table: remap.RemapTable, src: np.ndarray) -> np.ndarray:
    border = cv2.BORDER_WRAP if table.wrap else cv2.BORDER_CONSTANT
    return cv2.remap(src, table.map1, table.map2, cv2.INTER_LINEAR, borderMode=border)


def operations(erp: np.ndarray, w: int, h: int, py, fov_py: float) -> dict:
    """name -> (ours, py360convert's or None, output description, the bare cv2.remap of our
    cached table), the calls taking no argument."""
    fw = w // 4
    lon, lat = math.radians(LON), math.radians(LAT)
    cube = erp_to_cubemap(erp, fw, interpolation="linear", cube_format="horizon")
    view = erp_to_perspective(erp, lon=lon, lat=lat, fov_deg=FOV, width=VIEW, height=VIEW)
    R = rotation_matrix(0.4, 0.9, 0.2)
    pv = PerspectiveView(lon, lat, FOV, VIEW, VIEW)
    tables = {  # the same cached tables the calls use: one bare cv2.remap each is the floor
        "e2p": (lambda: pv.sample_table(h, w, "linear"), erp),
        "e2c": (lambda: cubemap.cubemap_table(fw, h, w, "linear"), erp),
        "c2e": (lambda: cubemap.erp_from_cubemap_table(fw, w, "linear"), cubemap._atlas(cube)),
        "p2e": (lambda: pv.back_table(w, "linear"), view),
        "rotate": (lambda: rotation_table(R, h, w, "linear"), erp),
    }

    def floor(name: str):
        get, src = tables[name]
        return lambda: bare_remap(get(), src)

    return {
        "e2p": (lambda: erp_to_perspective(erp, lon=lon, lat=lat, fov_deg=FOV, width=VIEW, height=VIEW,
                                           interpolation="linear"),
                (lambda: py.e2p(erp, (fov_py, fov_py), LON, LAT, (VIEW, VIEW), mode="bilinear")) if py else None,
                f"{VIEW}x{VIEW}", floor("e2p")),
        "e2c": (lambda: erp_to_cubemap(erp, fw, interpolation="linear", cube_format="dice"),
                (lambda: py.e2c(erp, fw, mode="bilinear", cube_format="dice")) if py else None,
                f"dice {4 * fw}x{3 * fw}", floor("e2c")),
        "c2e": (lambda: cubemap_to_erp(cube, w, interpolation="linear", cube_format="horizon"),
                (lambda: py.c2e(cube, h, w, mode="bilinear", cube_format="horizon")) if py else None,
                f"{w}x{h}", floor("c2e")),
        "p2e": (lambda: perspective_to_erp(view, lon=lon, lat=lat, fov_deg=FOV, erp_width=w, interpolation="linear"),
                None, f"{w}x{h}", floor("p2e")),
        "rotate": (lambda: rotate_erp(erp, R, interpolation="linear"), None, f"{w}x{h}", floor("rotate")),
    }


def main() -> dict:
    try:
        import py360convert as py
        py_version = getattr(py, "__version__", "installed")
    except ImportError:  # the comparison needs it; our own timings still mean something
        py, py_version = None, None
    frames, source = load_frames()
    fov_py = math.degrees(2 * math.atan(math.tan(math.radians(FOV) / 2) * (VIEW - 1) / VIEW))
    rows = []
    for w, h in SIZES:
        ops = operations(frames[w], w, h, py, fov_py)
        for name, (ours, theirs, out_desc, bare) in ops.items():
            m = measure(ours, theirs, bare, py)
            o_cold, o_warm = m["ours_cold"], m["ours_warm"]
            p_cold, p_warm = m.get("py_cold"), m.get("py_warm")
            mad = None
            if theirs is not None:
                o_out, p_out = m["outputs"]["ours"], m["outputs"]["py"]
                mad = round(float(np.abs(np.asarray(o_out, np.int16) - np.asarray(p_out, np.int16)).mean()), 3)
            rows.append({"op": name, "erp": f"{w}x{h}", "output": out_desc, "interp": "bilinear",
                         "ours_cold_ms": round(o_cold, 2), "py360_cold_ms": None if p_cold is None else round(p_cold, 2),
                         "speedup_cold": ratio(o_cold, p_cold),
                         "ours_warm_ms": round(o_warm, 2), "py360_warm_ms": None if p_warm is None else round(p_warm, 2),
                         "speedup_warm": ratio(o_warm, p_warm), "remap_floor_ms": round(m["floor_warm"], 2),
                         "mad_vs_py360": mad})
    clear_all(py)
    summary: dict = {"steady_state": "warm (cached tables); cold = first call, tables built",
                     "speedup_warm": {}, "speedup_cold": {}}
    for r in rows:
        if r["speedup_warm"] is not None:
            summary["speedup_warm"][f"{r['op']}@{r['erp']}"] = r["speedup_warm"]
            summary["speedup_cold"][f"{r['op']}@{r['erp']}"] = r["speedup_cold"]
    for key in ("speedup_warm", "speedup_cold"):
        vals = list(summary[key].values())
        summary[f"{key}_min"] = min(vals) if vals else None
        summary[f"{key}_geomean"] = round(float(np.exp(np.mean(np.log(vals)))), 2) if vals else None
        summary[f"{key}_at_least_10x"] = sorted(k for k, v in summary[key].items() if v >= 10)
    summary.update(data=source, py360convert=py_version, cv2=cv2.__version__, cv2_threads=cv2.getNumThreads(),
                   machine=machine())
    return emit("geometry", rows, summary)


if __name__ == "__main__":
    main()

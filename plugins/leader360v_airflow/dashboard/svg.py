"""Small server-rendered SVG plots for the ops dashboard (issue 14: nothing fetched at view time;
clusters are often air-gapped, and no plotting library is a dependency of the project).

Every function returns one ``<svg>`` element as a string; text is escaped; the plots carry a
``<title>`` per mark so a hover shows the exact number.
"""

from __future__ import annotations

from html import escape

PALETTE = {"ready": "#2e7d32", "approved": "#66bb6a", "revised": "#00897b", "review": "#f9a825",
           "rejected": "#8e24aa", "in_progress": "#1e88e5", "failed": "#c62828", "quarantined": "#6d4c41"}
SERIES = ["#1e88e5", "#e53935", "#43a047", "#8e24aa", "#fb8c00", "#00897b"]


def _svg(w: int, h: int, body: list[str], label: str) -> str:
    return (f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
            f'role="img" aria-label="{escape(label)}">' + "".join(body) + "</svg>")


def _num(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def stacked_bars(categories: list[str], series: dict[str, list[float]], *, label: str, width: int = 720,
                 height: int = 220, colors: dict[str, str] | None = None) -> str:
    """One bar per category, stacked by series (e.g. videos per day by status), with a legend."""
    colors = colors or PALETTE
    left, bottom, top = 40, 34, 10
    n = max(len(categories), 1)
    totals = [sum(series[s][i] for s in series) for i in range(len(categories))]
    vmax = max(totals + [1])
    plot_h = height - bottom - top
    bw = (width - left - 10) / n
    body = [f'<text x="4" y="{top + 8}" class="ax">{_num(vmax)}</text>',
            f'<line x1="{left}" y1="{height - bottom}" x2="{width - 6}" y2="{height - bottom}" stroke="#999"/>']
    for i, cat in enumerate(categories):
        y = height - bottom
        x = left + i * bw
        for j, (name, vals) in enumerate(series.items()):
            v = vals[i]
            if v <= 0:
                continue
            h = plot_h * v / vmax
            y -= h
            body.append(f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{max(bw - 2, 1):.1f}" height="{h:.1f}" '
                        f'fill="{colors.get(name, SERIES[j % len(SERIES)])}"><title>{escape(cat)} {escape(name)}: '
                        f'{_num(v)}</title></rect>')
        if n <= 16 or i % max(n // 8, 1) == 0:
            body.append(f'<text x="{x + bw / 2:.1f}" y="{height - bottom + 12}" class="ax" text-anchor="middle">'
                        f'{escape(cat[5:] if len(cat) == 10 else cat)}</text>')
    lx = left
    for j, name in enumerate(series):
        body.append(f'<rect x="{lx}" y="{height - 12}" width="10" height="10" '
                    f'fill="{colors.get(name, SERIES[j % len(SERIES)])}"/>'
                    f'<text x="{lx + 14}" y="{height - 3}" class="ax">{escape(name.replace("_", " "))}</text>')
        lx += 24 + 7 * len(name)
    return _svg(width, height, body, label)


def hbars(items: list[tuple[str, float]], *, label: str, width: int = 520, unit: str = "",
          color: str = "#1e88e5") -> str:
    """Horizontal bars, one per (label, value), largest scale first."""
    row, left = 20, 190
    height = max(row * len(items) + 10, 30)
    vmax = max([v for _, v in items] + [1e-12])
    body = []
    if not items:
        body.append('<text x="4" y="18" class="ax">none</text>')
    for i, (name, v) in enumerate(items):
        y = 5 + i * row
        w = (width - left - 70) * v / vmax
        body.append(f'<text x="{left - 6}" y="{y + 13}" class="ax" text-anchor="end">{escape(str(name)[:32])}</text>'
                    f'<rect x="{left}" y="{y + 2}" width="{max(w, 1):.1f}" height="{row - 6}" fill="{color}">'
                    f'<title>{escape(str(name))}: {_num(v)}{unit}</title></rect>'
                    f'<text x="{left + w + 4:.1f}" y="{y + 13}" class="ax">{_num(v)}{unit}</text>')
    return _svg(width, height, body, label)


def ranges(items: list[tuple[str, float | None, float | None, int]], *, label: str, width: int = 520,
           unit: str = " s") -> str:
    """Per row a bar from 0 to p95 with a mark at p50 (stage durations); rows without data say so."""
    row, left = 22, 90
    height = row * len(items) + 24
    vmax = max([p95 or 0 for _, _, p95, _ in items] + [1e-9])
    scale = (width - left - 120) / vmax
    body = [f'<text x="{left}" y="{height - 4}" class="ax">bar: p95, mark: p50 ({escape(unit.strip())})</text>']
    for i, (name, p50, p95, n) in enumerate(items):
        y = 4 + i * row
        body.append(f'<text x="{left - 6}" y="{y + 14}" class="ax" text-anchor="end">{escape(name)}</text>')
        if p50 is None or p95 is None:
            body.append(f'<text x="{left}" y="{y + 14}" class="ax">no data</text>')
            continue
        body.append(f'<rect x="{left}" y="{y + 4}" width="{max(p95 * scale, 1):.1f}" height="{row - 10}" fill="#90caf9">'
                    f'<title>{escape(name)} p95 {_num(p95)}{unit} (n={n})</title></rect>'
                    f'<rect x="{left + p50 * scale - 1.5:.1f}" y="{y + 1}" width="3" height="{row - 4}" fill="#0d47a1">'
                    f'<title>{escape(name)} p50 {_num(p50)}{unit}</title></rect>'
                    f'<text x="{left + p95 * scale + 6:.1f}" y="{y + 14}" class="ax">{_num(p50)} / {_num(p95)}{unit}'
                    f' (n={n})</text>')
    return _svg(width, height, body, label)


def lines(series: dict[str, list[float]], *, label: str, x: list[float] | None = None, width: int = 720,
          height: int = 200, marks: list[float] | None = None, ylim: tuple[float, float] | None = None,
          unit: str = "") -> str:
    """Line plot of several series over the frames; ``marks``: vertical lines (e.g. refine checks)."""
    left, bottom, top = 52, 30, 10
    vals = [v for s in series.values() for v in s]
    n = max((len(s) for s in series.values()), default=0)
    xs = x if x is not None else list(range(n))
    if not vals or n == 0:
        return _svg(width, 40, ['<text x="4" y="20" class="ax">no data</text>'], label)
    lo, hi = ylim if ylim else (min(vals), max(vals))
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)

    def px(v):
        return left + (width - left - 10) * (v - x0) / (x1 - x0)

    def py(v):
        return top + (height - top - bottom) * (1 - (v - lo) / (hi - lo))

    body = [f'<line x1="{left}" y1="{height - bottom}" x2="{width - 6}" y2="{height - bottom}" stroke="#999"/>',
            f'<text x="4" y="{top + 8}" class="ax">{_num(hi)}{escape(unit)}</text>',
            f'<text x="4" y="{height - bottom}" class="ax">{_num(lo)}{escape(unit)}</text>',
            f'<text x="{left}" y="{height - bottom + 14}" class="ax">frame {_num(x0)}</text>',
            f'<text x="{width - 10}" y="{height - bottom + 14}" class="ax" text-anchor="end">{_num(x1)}</text>']
    for m in marks or []:
        body.append(f'<line x1="{px(m):.1f}" y1="{top}" x2="{px(m):.1f}" y2="{height - bottom}" stroke="#bbb" '
                    f'stroke-dasharray="3,3"><title>frame {_num(m)}</title></line>')
    lx = left
    for j, (name, s) in enumerate(series.items()):
        c = SERIES[j % len(SERIES)]
        pts = " ".join(f"{px(xs[i]):.1f},{py(v):.1f}" for i, v in enumerate(s) if i < len(xs))
        body.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{pts}">'
                    f'<title>{escape(name)}</title></polyline>')
        body.append(f'<rect x="{lx}" y="{height - 12}" width="10" height="10" fill="{c}"/>'
                    f'<text x="{lx + 14}" y="{height - 3}" class="ax">{escape(name)}</text>')
        lx += 30 + 7 * len(name)
    return _svg(width, height, body, label)


def boxes(groups: dict[str, list[float]], *, label: str, width: int = 620, unit: str = " sr") -> str:
    """Per group a box plot (min, quartiles, median, max) on one shared axis, with n."""
    from tasks.ops.views import percentile

    row, left = 22, 150
    items = sorted(groups.items(), key=lambda kv: -len(kv[1]))
    height = row * len(items) + 24
    vmax = max([max(v) for _, v in items if v] + [1e-12])
    scale = (width - left - 140) / vmax
    body = [f'<text x="{left}" y="{height - 4}" class="ax">0 .. {_num(vmax)}{escape(unit)}</text>']
    if not items:
        body.append('<text x="4" y="16" class="ax">no areas recorded</text>')
    for i, (name, v) in enumerate(items):
        y = 4 + i * row
        q = [percentile(v, p) for p in (0, 25, 50, 75, 100)]
        body.append(f'<text x="{left - 6}" y="{y + 14}" class="ax" text-anchor="end">{escape(name[:22])}</text>'
                    f'<line x1="{left + q[0] * scale:.1f}" y1="{y + 10}" x2="{left + q[4] * scale:.1f}" y2="{y + 10}" '
                    f'stroke="#555"/>'
                    f'<rect x="{left + q[1] * scale:.1f}" y="{y + 3}" width="{max((q[3] - q[1]) * scale, 1):.1f}" '
                    f'height="{row - 8}" fill="#a5d6a7" stroke="#2e7d32"><title>{escape(name)}: median {_num(q[2])}'
                    f'{unit}, quartiles {_num(q[1])}..{_num(q[3])}, n={len(v)}</title></rect>'
                    f'<line x1="{left + q[2] * scale:.1f}" y1="{y + 3}" x2="{left + q[2] * scale:.1f}" '
                    f'y2="{y + row - 5}" stroke="#1b5e20" stroke-width="2"/>'
                    f'<text x="{left + q[4] * scale + 6:.1f}" y="{y + 14}" class="ax">median {_num(q[2])}, n={len(v)}</text>')
    return _svg(width, height, body, label)

"""Small inline SVG figures for the curation report (histograms, curves, bar charts): no plotting library.

Each function returns one ``<svg>`` element as a string, sized in CSS pixels, with a ``<title>`` (what a
screen reader says) and class names the report's checks look for: ``bar``, ``threshold``, ``curve``,
``csv-pairs``, ``whisker``, ``empty``.
"""

from __future__ import annotations

import html
import math

__all__ = ["nice_ticks", "histogram_svg", "curve_svg", "label_bars_svg", "interval_bars_svg", "PALETTE"]

#: Okabe-Ito colours (readable with the common colour-vision deficiencies).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
_FONT = 'font-family="sans-serif" font-size="11"'


def _e(text):
    return html.escape(str(text), quote=True)


def _num(x):
    """A coordinate with 1 decimal (short files)."""
    return f"{x:.1f}"


def nice_ticks(lo, hi, n=5):
    """About ``n`` round tick values covering ``[lo, hi]``.

    Example
    -------
    >>> nice_ticks(0.0, 1.0)
    [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    >>> nice_ticks(0.71, 0.93, 4)
    [0.75, 0.8, 0.85, 0.9]
    """
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))

    def ticks_of(step):
        first = math.ceil(lo / step - 1e-9) * step
        out, k = [], 0
        while first + k * step <= hi + 1e-9 * step:
            out.append(round(first + k * step, 10))
            k += 1
        return out

    candidates = [ticks_of(m * mag) for m in (1, 2, 5, 10)]
    return min(candidates, key=lambda t: (abs(len(t) - n - 0.5), len(t)))


def _fmt_tick(v):
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3f}".rstrip("0").rstrip(".") if abs(v) < 1 else f"{v:g}"


class _Frame:
    """A plot area with linear x and linear or log10 y scales."""

    def __init__(self, width, height, x_range, y_range, log_y=False, left=60, right=18, top=26, bottom=44):
        self.w, self.h = width, height
        self.left, self.right, self.top, self.bottom = left, right, top, bottom
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range
        self.log_y = log_y

    def x(self, v):
        span = (self.x1 - self.x0) or 1.0
        return self.left + (v - self.x0) / span * (self.w - self.left - self.right)

    def y(self, v):
        if self.log_y:
            v = math.log10(max(v, 10 ** self.y0))
        span = (self.y1 - self.y0) or 1.0
        return self.h - self.bottom - (v - self.y0) / span * (self.h - self.top - self.bottom)

    def axes(self, xlabel, ylabel, x_ticks=None):
        out = []
        xb, yb = self.h - self.bottom, self.left
        out.append(f'<line class="axis" x1="{yb}" y1="{self.top}" x2="{yb}" y2="{xb}" stroke="#444"/>')
        out.append(f'<line class="axis" x1="{yb}" y1="{xb}" x2="{self.w - self.right}" y2="{xb}" stroke="#444"/>')
        for t in x_ticks if x_ticks is not None else nice_ticks(self.x0, self.x1, 6):
            px = _num(self.x(t))
            out.append(f'<line x1="{px}" y1="{xb}" x2="{px}" y2="{xb + 4}" stroke="#444"/>')
            out.append(f'<text x="{px}" y="{xb + 15}" text-anchor="middle" {_FONT}>{_e(_fmt_tick(t))}</text>')
        if self.log_y:
            y_ticks = [10.0 ** k for k in range(int(math.floor(self.y0)), int(math.ceil(self.y1)) + 1)
                       if self.y0 - 1e-9 <= k <= self.y1 + 1e-9]
        else:
            y_ticks = nice_ticks(self.y0, self.y1, 4)
        for t in y_ticks:
            py = _num(self.y(t))
            out.append(f'<line x1="{yb - 4}" y1="{py}" x2="{yb}" y2="{py}" stroke="#444"/>')
            out.append(f'<line x1="{yb}" y1="{py}" x2="{self.w - self.right}" y2="{py}" stroke="#eee"/>')
            out.append(f'<text x="{yb - 6}" y="{py}" dy="0.32em" text-anchor="end" {_FONT}>{_e(_fmt_tick(t))}</text>')
        out.append(f'<text x="{(self.left + self.w - self.right) / 2:.1f}" y="{self.h - 8}" text-anchor="middle" '
                   f'{_FONT}>{_e(xlabel)}</text>')
        out.append(f'<text transform="translate(14,{(self.top + xb) / 2:.1f}) rotate(-90)" text-anchor="middle" '
                   f'{_FONT}>{_e(ylabel)}</text>')
        return out

    def threshold(self, t, label):
        px = _num(self.x(t))
        return [f'<line class="threshold" data-threshold="{t:g}" x1="{px}" y1="{self.top - 6}" x2="{px}" '
                f'y2="{self.h - self.bottom}" stroke="#D55E00" stroke-width="2" stroke-dasharray="5,3"/>',
                f'<text x="{px}" y="{self.top - 10}" text-anchor="middle" fill="#D55E00" {_FONT}>{_e(label)}</text>']


def _svg(width, height, title, cls, body):
    return (f'<svg class="{cls}" role="img" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}"><title>{_e(title)}</title>' + "".join(body) + "</svg>")


def histogram_svg(counts, edges, threshold=None, title="", xlabel="cosine", ylabel="clips", width=530, height=250):
    """Bars of a histogram (``len(edges) == len(counts) + 1``), the threshold as a dashed vertical line.

    Example
    -------
    >>> s = histogram_svg([1, 3, 2], [0.7, 0.8, 0.9, 1.0], threshold=0.8, title="t")
    >>> s.count('class="bar"'), 'class="threshold"' in s
    (3, True)
    """
    counts = [int(c) for c in counts]
    edges = [float(e) for e in edges]
    lo, hi = edges[0], edges[-1]
    if threshold is not None:
        lo, hi = min(lo, threshold), max(hi, threshold)
    f = _Frame(width, height, (lo, hi), (0, max(max(counts, default=0), 1) * 1.05))
    body = f.axes(xlabel, ylabel)
    for c, a, b in zip(counts, edges[:-1], edges[1:]):
        if c <= 0:
            continue
        x, w = f.x(a), max(f.x(b) - f.x(a) - 0.5, 0.5)
        y = f.y(c)
        body.append(f'<rect class="bar" x="{_num(x)}" y="{_num(y)}" width="{_num(w)}" height="{_num(f.y(0) - y)}" '
                    f'fill="#0072B2"><title>[{a:.3f}, {b:.3f}): {c:,}</title></rect>')
    if threshold is not None:
        body += f.threshold(threshold, f"threshold {threshold:g}")
    return _svg(width, height, title, "fig-hist", body)


def curve_svg(xs, ys, threshold=None, marker=None, title="", xlabel="threshold t", ylabel="pairs with cosine ≥ t",
              width=530, height=250):
    """A decreasing count curve on a log y axis; the threshold line and a marker ``(x, count, label)``.

    Example
    -------
    >>> s = curve_svg([0.5, 0.6, 0.7], [1000, 100, 3], threshold=0.6, marker=(0.6, 90, "CSV: 90 pairs"))
    >>> 'class="curve"' in s, 'class="threshold"' in s, 'class="csv-pairs"' in s
    (True, True, True)
    """
    pts = [(float(x), float(y)) for x, y in zip(xs, ys) if y > 0]
    top = max([y for _, y in pts] + ([marker[1]] if marker else []) + [1])
    y1 = max(math.ceil(math.log10(top) + 1e-9), 1)
    x_lo = min([x for x, _ in pts] + ([threshold] if threshold is not None else []), default=0.0)
    x_hi = max([x for x, _ in pts] + ([threshold] if threshold is not None else []), default=1.0)
    f = _Frame(width, height, (x_lo, x_hi if x_hi > x_lo else x_lo + 1), (0, y1), log_y=True)
    body = f.axes(xlabel, ylabel)
    if pts:
        path = " ".join(f"{_num(f.x(x))},{_num(f.y(y))}" for x, y in pts)
        body.append(f'<polyline class="curve" points="{path}" fill="none" stroke="#0072B2" stroke-width="2"/>')
    if threshold is not None:
        body += f.threshold(threshold, f"threshold {threshold:g}")
    if marker is not None and marker[1] > 0:
        mx, my, label = marker
        anchor = "end" if f.x(mx) > width / 2 else "start"
        dx = -8 if anchor == "end" else 8
        body.append(f'<circle class="csv-pairs" cx="{_num(f.x(mx))}" cy="{_num(f.y(my))}" r="5" fill="#E69F00" '
                    f'stroke="#000"><title>{_e(label)}</title></circle>')
        body.append(f'<text x="{_num(f.x(mx) + dx)}" y="{_num(f.y(my) - 8)}" text-anchor="{anchor}" '
                    f'{_FONT}>{_e(label)}</text>')
    return _svg(width, height, title, "fig-curve", body)


def label_bars_svg(counts, title="", width=530):
    """Horizontal bars of ``{label: count}``; a label with 0 is drawn in red with the word "none".

    Example
    -------
    >>> s = label_bars_svg({"dog": 3, "rain": 0})
    >>> s.count('class="bar"'), s.count('class="empty"')
    (1, 1)
    """
    row, left, right, top = 18, 150, 60, 8
    height = top * 2 + row * max(len(counts), 1)
    peak = max(list(counts.values()) + [1])
    body = []
    for i, (label, c) in enumerate(counts.items()):
        y = top + i * row
        short = label if len(label) <= 24 else label[:23] + "…"
        if c > 0:
            w = max((width - left - right) * c / peak, 1)
            body.append(f'<text x="{left - 6}" y="{y + row / 2:.1f}" dy="0.32em" text-anchor="end" {_FONT}>'
                        f'{_e(short)}</text>')
            body.append(f'<rect class="bar" x="{left}" y="{y + 2}" width="{w:.1f}" height="{row - 4}" fill="#009E73">'
                        f'<title>{_e(label)}: {c}</title></rect>')
            body.append(f'<text x="{left + w + 4:.1f}" y="{y + row / 2:.1f}" dy="0.32em" {_FONT}>{c:,}</text>')
        else:
            body.append(f'<g class="empty"><text x="{left - 6}" y="{y + row / 2:.1f}" dy="0.32em" text-anchor="end" '
                        f'fill="#C00" font-weight="bold" {_FONT}>{_e(short)}</text>'
                        f'<text x="{left + 4}" y="{y + row / 2:.1f}" dy="0.32em" fill="#C00" font-weight="bold" '
                        f'{_FONT}>none</text></g>')
    return _svg(width, height, title, "fig-labels", body)


def interval_bars_svg(groups, series, values, title="", ylabel="top-1 accuracy", width=760, height=300):
    """Grouped bars with interval whiskers: ``values[(series, group)] = (mean, low, high)`` (missing: no bar).

    Example
    -------
    >>> v = {("A", "esc50"): (0.5, 0.4, 0.6), ("B", "esc50"): (0.6, None, None)}
    >>> s = interval_bars_svg(["esc50"], ["A", "B"], v)
    >>> s.count('class="bar"'), s.count('class="whisker"')
    (2, 1)
    """
    legend_h = 18 * math.ceil(len(series) / 5)
    f = _Frame(width, height + legend_h, (0, max(len(groups), 1)), (0, 1.0), bottom=44 + legend_h)
    body = f.axes("", ylabel, x_ticks=[])
    n = max(len(series), 1)
    for gi, group in enumerate(groups):
        gx0, gx1 = f.x(gi + 0.1), f.x(gi + 0.9)
        bw = (gx1 - gx0) / n
        body.append(f'<text x="{(gx0 + gx1) / 2:.1f}" y="{f.h - f.bottom + 15}" text-anchor="middle" {_FONT}>'
                    f'{_e(group)}</text>')
        for si, name in enumerate(series):
            v = values.get((name, group))
            if v is None or v[0] is None:
                continue
            mean, low, high = v
            x = gx0 + si * bw
            colour = PALETTE[si % len(PALETTE)]
            y = f.y(min(max(mean, 0), 1))
            tip = f"{name}, {group}: {mean:.3f}" + (f" [{low:.3f}, {high:.3f}]" if low is not None else "")
            body.append(f'<rect class="bar" x="{x + 1:.1f}" y="{y:.1f}" width="{max(bw - 2, 1):.1f}" '
                        f'height="{f.y(0) - y:.1f}" fill="{colour}"><title>{_e(tip)}</title></rect>')
            if low is not None and high is not None:
                cx = x + bw / 2
                ylo, yhi = f.y(min(max(low, 0), 1)), f.y(min(max(high, 0), 1))
                body.append(f'<path class="whisker" d="M{cx:.1f},{ylo:.1f}V{yhi:.1f}M{cx - 3:.1f},{ylo:.1f}'
                            f'h6M{cx - 3:.1f},{yhi:.1f}h6" stroke="#000" stroke-width="1.2" fill="none"/>')
    ly = height + 6
    for si, name in enumerate(series):
        lx = f.left + (si % 5) * 140
        yy = ly + (si // 5) * 18
        body.append(f'<rect x="{lx}" y="{yy}" width="12" height="12" fill="{PALETTE[si % len(PALETTE)]}"/>'
                    f'<text x="{lx + 16}" y="{yy + 6}" dy="0.32em" {_FONT}>{_e(name)}</text>')
    return _svg(width, height + legend_h, title, "fig-results", body)

"""Charts for the web UI, drawn on the server as SVG strings (no JavaScript, no charting library).

Pure functions: numbers in, `Markup` out, every piece of text escaped. Colour is never the only
carrier of meaning: each verdict is also written out, each series is named in a legend, and
each event marker has a `<title>` and a row in the list the page prints below the chart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup, escape

SVG_NS = "http://www.w3.org/2000/svg"
VERDICTS = {
    # verdict: (colour, the words shown beside it)
    "ruled_out": ("#1b6b3a", "harm ruled out"),
    "detected": ("#b3261e", "harm detected"),
    "inconclusive": ("#56606b", "inconclusive"),
    "none": ("#56606b", "no guardrail"),
    "exploratory": ("#56606b", "exploratory"),
}
SERIES_COLOURS = ("#1f5fa8", "#b35c00", "#6b3fa0", "#1b6b3a", "#b3261e", "#56606b")
EVENT_SHAPES = {"kill": "#b3261e", "decision": "#1f5fa8", "guardian": "#8a5a00", "eval_gate": "#6b3fa0"}


@dataclass(frozen=True, slots=True)
class Scale:
    """A linear map from the numbers [lo, hi] to the pixels [x0, x1]."""

    lo: float
    hi: float
    x0: float
    x1: float

    def __call__(self, value: float) -> float:
        if self.hi == self.lo:
            return (self.x0 + self.x1) / 2
        return self.x0 + (value - self.lo) / (self.hi - self.lo) * (self.x1 - self.x0)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round numbers (1, 2, 2.5 or 5 × 10^k apart) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(s * power for s in (1, 2, 2.5, 5, 10) if s * power >= raw)
    first = math.floor(lo / step) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < hi:
        ticks.append(round(value, 12))
    return ticks


def _fmt(value: float, unit: str) -> str:
    if unit == "%":
        text = f"{value * 100:+.3g}" if value else "0"
        return f"{text} %"
    text = f"{value:+.4g}" if value else "0"
    return f"{text} {unit}".rstrip()


def _svg(width: float, height: float, label: str, body: list[str], cls: str) -> Markup:
    return Markup(
        f'<svg xmlns="{SVG_NS}" class="{cls}" width="{width:g}" height="{height:g}" '
        f'viewBox="0 0 {width:g} {height:g}" role="img" aria-label="{escape(label)}">'
        f"<title>{escape(label)}</title>{''.join(body)}</svg>"
    )


def _x(value: float) -> str:
    return f"{value:.2f}"


def interval_plot(
    metric: str,
    *,
    estimate: float | None,
    fixed: tuple[float, float] | None,
    sequential: tuple[float, float] | None = None,
    margin: float | None = None,
    unit: str = "%",
    verdict: str = "inconclusive",
    width: float = 360,
    domain: tuple[float, float] | None = None,
) -> Markup:
    """One comparison on one axis: a zero line, the fixed-horizon interval (thick bar), the
    always-valid interval (thin bar above it), the point estimate, the guardrail margin (dashed,
    at the value where harm begins) and the verdict in words. `unit` "%" means the numbers are
    relative (0.05 is 5 %). `domain`: values the axis must cover too (plots side by side, e.g.
    one per segment, share one scale)."""
    colour, words = VERDICTS.get(verdict, VERDICTS["inconclusive"])
    numbers = [0.0, *(v for v in domain or () if math.isfinite(v))]
    for pair in (fixed, sequential):
        if pair is not None:
            numbers.extend(v for v in pair if math.isfinite(v))
    for v in (estimate, margin):
        if v is not None and math.isfinite(v):
            numbers.append(v)
    lo, hi = min(numbers), max(numbers)
    if hi == lo:
        lo, hi = lo - 0.01, hi + 0.01
    ticks = nice_ticks(lo, hi)
    scale = Scale(ticks[0], ticks[-1], 24, width - 24)
    height = 84
    body: list[str] = []
    axis_y = 50
    body.append(
        f'<line class="axis" x1="{_x(scale.x0)}" x2="{_x(scale.x1)}" y1="{axis_y}" y2="{axis_y}" stroke="#8a949e"/>'
    )
    for t in ticks:
        tx = _x(scale(t))
        body.append(
            f'<line class="tick" data-value="{t!r}" x1="{tx}" x2="{tx}" y1="{axis_y}" y2="{axis_y + 4}" stroke="#8a949e"/>'
        )
        body.append(
            f'<text class="tick-label" x="{tx}" y="{axis_y + 16}" font-size="10" text-anchor="middle" fill="#56606b">{escape(_fmt(t, unit))}</text>'
        )
    zx = _x(scale(0.0))
    body.append(
        f'<line class="zero" x1="{zx}" x2="{zx}" y1="6" y2="{axis_y}" stroke="#1d232b" stroke-width="1"/>'
    )
    if margin is not None and math.isfinite(margin):
        mx = _x(scale(margin))
        body.append(
            f'<line class="margin" x1="{mx}" x2="{mx}" y1="6" y2="{axis_y}" stroke="#b3261e" stroke-dasharray="4 3"/>'
        )
        body.append(
            f'<text class="margin-label" x="{mx}" y="{axis_y - 2}" font-size="9" text-anchor="middle" fill="#b3261e" dy="-36">margin {escape(_fmt(margin, unit))}</text>'
        )
    if sequential is not None:
        a, b = scale(sequential[0]), scale(sequential[1])
        body.append(
            f'<line class="sequential" x1="{_x(a)}" x2="{_x(b)}" y1="20" y2="20" stroke="{colour}" stroke-width="2"><title>always-valid interval [{escape(_fmt(sequential[0], unit))}, {escape(_fmt(sequential[1], unit))}]</title></line>'
        )
    if fixed is not None:
        a, b = scale(fixed[0]), scale(fixed[1])
        body.append(
            f'<line class="fixed" x1="{_x(a)}" x2="{_x(b)}" y1="33" y2="33" stroke="{colour}" stroke-width="6"><title>fixed-horizon interval [{escape(_fmt(fixed[0], unit))}, {escape(_fmt(fixed[1], unit))}]</title></line>'
        )
    if estimate is not None and math.isfinite(estimate):
        ex = _x(scale(estimate))
        body.append(
            f'<circle class="estimate" cx="{ex}" cy="33" r="4.5" fill="#ffffff" stroke="#1d232b" stroke-width="1.5"><title>estimate {escape(_fmt(estimate, unit))}</title></circle>'
        )
    label = f"{metric}: {words}"
    if estimate is not None:
        label += f", difference {_fmt(estimate, unit)}"
    if fixed is not None:
        label += f", interval [{_fmt(fixed[0], unit)}, {_fmt(fixed[1], unit)}]"
    if margin is not None:
        label += f", margin {_fmt(margin, unit)}"
    body.append(
        f'<text class="verdict" x="{_x(scale.x1)}" y="{height - 2}" font-size="11" text-anchor="end" fill="{colour}">{escape(words)}</text>'
    )
    return _svg(width, height, label, body, f"interval-plot verdict-{escape(verdict)}")


@dataclass(frozen=True, slots=True)
class Event:
    ts: datetime
    kind: str
    text: str


def _time_ticks(start: datetime, end: datetime, scale: Scale) -> list[tuple[float, str]]:
    span = (end - start).total_seconds()
    fmt = "%H:%M:%S" if span < 600 else "%H:%M" if span <= 86400 else "%m-%d %H:%M"
    out = []
    for i in range(5):
        t = start.timestamp() + span * i / 4
        moment = datetime.fromtimestamp(t, tz=start.tzinfo)
        out.append((scale(t), moment.strftime(fmt)))
    return out


def time_range(moments: Sequence[datetime]) -> tuple[datetime, datetime]:
    start, end = min(moments), max(moments)
    if (end - start).total_seconds() < 60:
        end = datetime.fromtimestamp(start.timestamp() + 3600, tz=start.tzinfo)
    return start, end


def timeline_chart(events: Sequence[Event], start: datetime, end: datetime, width: float = 720) -> Markup:
    """The events as markers on a time axis from `start` to `end` (UTC times as ticks)."""
    scale = Scale(start.timestamp(), end.timestamp(), 40, width - 40)
    axis_y = 40
    body = [
        f'<line class="axis" x1="{_x(scale.x0)}" x2="{_x(scale.x1)}" y1="{axis_y}" y2="{axis_y}" stroke="#8a949e"/>'
    ]
    for x, text in _time_ticks(start, end, scale):
        body.append(
            f'<line class="tick" x1="{_x(x)}" x2="{_x(x)}" y1="{axis_y}" y2="{axis_y + 4}" stroke="#8a949e"/>'
        )
        body.append(
            f'<text class="tick-label" x="{_x(x)}" y="{axis_y + 16}" font-size="10" text-anchor="middle" fill="#56606b">{escape(text)} UTC</text>'
        )
    for i, event in enumerate(events):
        ex = _x(scale(event.ts.timestamp()))
        colour = EVENT_SHAPES.get(event.kind, "#1d232b")
        y = 14 + (i % 3) * 8  # markers at one moment stay apart
        body.append(
            f'<g class="event event-{escape(event.kind)}"><line x1="{ex}" x2="{ex}" y1="{y}" y2="{axis_y}" stroke="{colour}" stroke-width="1"/>'
            f'<circle cx="{ex}" cy="{y}" r="4" fill="{colour}"><title>{escape(event.text)}</title></circle></g>'
        )
    return _svg(width, 64, f"release timeline: {len(events)} events", body, "timeline-chart")


def series_chart(
    metric: str,
    series: Mapping[str, Sequence[tuple[datetime, float]]],
    start: datetime,
    end: datetime,
    events: Sequence[Event] = (),
    width: float = 720,
) -> Markup:
    """Hourly means per variation as lines on the same time axis as the timeline, the events as
    faint vertical lines; a legend names each line (colour is not the only key)."""
    values = [v for points in series.values() for _, v in points if math.isfinite(v)]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi == lo:
        lo, hi = lo - abs(lo) * 0.05 - 1e-9, hi + abs(hi) * 0.05 + 1e-9
    ticks = nice_ticks(lo, hi, 4)
    height, top, bottom = 170, 10, 130
    xs = Scale(start.timestamp(), end.timestamp(), 56, width - 40)
    ys = Scale(ticks[0], ticks[-1], bottom, top)
    body = [
        f'<line class="axis" x1="{_x(xs.x0)}" x2="{_x(xs.x1)}" y1="{bottom}" y2="{bottom}" stroke="#8a949e"/>'
    ]
    for t in ticks:
        y = _x(ys(t))
        body.append(
            f'<line class="grid" x1="{_x(xs.x0)}" x2="{_x(xs.x1)}" y1="{y}" y2="{y}" stroke="#e4e7eb"/>'
        )
        body.append(
            f'<text class="tick-label" x="{_x(xs.x0 - 4)}" y="{y}" dy="3" font-size="10" text-anchor="end" fill="#56606b">{escape(f"{t:g}")}</text>'
        )
    for x, text in _time_ticks(start, end, xs):
        body.append(
            f'<text class="tick-label" x="{_x(x)}" y="{bottom + 14}" font-size="10" text-anchor="middle" fill="#56606b">{escape(text)} UTC</text>'
        )
    for event in events:
        ex = _x(xs(event.ts.timestamp()))
        body.append(
            f'<line class="event-line" x1="{ex}" x2="{ex}" y1="{top}" y2="{bottom}" stroke="#8a949e" stroke-dasharray="2 3"><title>{escape(event.text)}</title></line>'
        )
    legend_x = xs.x0
    for i, (variation, points) in enumerate(series.items()):
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        dash = "" if i == 0 else f' stroke-dasharray="{3 + 3 * i} 3"'  # line style tells them apart too
        coords = [(xs(ts.timestamp()), ys(v)) for ts, v in sorted(points) if math.isfinite(v)]
        path = " ".join(f"{_x(px)},{_x(py)}" for px, py in coords)
        body.append(f'<g class="series" data-variation="{escape(variation)}">')
        if len(coords) > 1:
            body.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        for px, py in coords:
            body.append(f'<circle cx="{_x(px)}" cy="{_x(py)}" r="2.5" fill="{colour}"/>')
        body.append("</g>")
        body.append(
            f'<line x1="{_x(legend_x)}" x2="{_x(legend_x + 18)}" y1="{height - 8}" y2="{height - 8}" stroke="{colour}" stroke-width="2"{dash}/>'
        )
        body.append(
            f'<text class="legend" x="{_x(legend_x + 22)}" y="{height - 4}" font-size="11" fill="#1d232b">{escape(variation)}</text>'
        )
        legend_x += 30 + 7 * len(variation)
    return _svg(width, height, f"{metric}: hourly mean per variation", body, "series-chart")


@dataclass(frozen=True, slots=True)
class DiffPoint:
    """The comparison as of one checkpoint: the estimate and its intervals (None: not yet)."""

    ts: datetime
    estimate: float | None
    fixed: tuple[float, float] | None
    sequential: tuple[float, float] | None
    units: int = 0


def _clip_limit(points: Sequence[DiffPoint], margin: float | None) -> float:
    """How far from zero the chart's y axis reaches: the latest always-valid interval, every
    estimate and twice the margin — early intervals (a handful of units) are far wider and are
    cut at the edge rather than squash everything else into a line."""
    reach = [abs(margin) * 2] if margin is not None and math.isfinite(margin) else []
    reach += [abs(p.estimate) for p in points if p.estimate is not None and math.isfinite(p.estimate)]
    latest = next((p for p in reversed(points) if p.sequential or p.fixed), None)
    if latest is not None:
        reach += [abs(v) for v in (latest.sequential or latest.fixed or ()) if math.isfinite(v)]
    return max(reach, default=0.01) * 1.15 or 0.01


def difference_chart(
    metric: str,
    points: Sequence[DiffPoint],
    start: datetime,
    end: datetime,
    *,
    margin: float | None = None,
    events: Sequence[Event] = (),
    unit: str = "%",
    width: float = 720,
) -> Markup:
    """The difference over time (LaunchDarkly's monitoring tile, with honest intervals): on a UTC
    time axis, the estimate at each checkpoint (dots on a line), its always-valid interval as a
    shaded band (valid at every look, so it may be read as often as the page is), the
    fixed-horizon interval as a thin whisker at each checkpoint (valid only at one planned look),
    a solid zero line, the guardrail margin as a dashed line at the value where harm begins, and
    the release's ramp steps, kills and decisions as vertical markers with their `<title>`.
    Values beyond the axis are drawn at its edge (their exact figures are in the title and the
    page's table). `unit` "%" means the numbers are relative (0.05 is 5 %)."""
    limit = _clip_limit(points, margin)
    ticks = nice_ticks(-limit, limit, 5)
    height, top, bottom = 200, 12, 160
    xs = Scale(start.timestamp(), end.timestamp(), 64, width - 44)
    ys = Scale(ticks[0], ticks[-1], bottom, top)

    def y(value: float) -> float:
        return ys(min(max(value, ticks[0]), ticks[-1]))

    body = [
        f'<line class="axis" x1="{_x(xs.x0)}" x2="{_x(xs.x1)}" y1="{bottom}" y2="{bottom}" stroke="#8a949e"/>'
    ]
    for t in ticks:
        ty = _x(ys(t))
        body.append(
            f'<line class="grid" data-value="{t!r}" x1="{_x(xs.x0)}" x2="{_x(xs.x1)}" y1="{ty}" y2="{ty}" stroke="#e4e7eb"/>'
        )
        body.append(
            f'<text class="tick-label" x="{_x(xs.x0 - 4)}" y="{ty}" dy="3" font-size="10" text-anchor="end" fill="#56606b">{escape(_fmt(t, unit))}</text>'
        )
    for x, text in _time_ticks(start, end, xs):
        body.append(
            f'<text class="tick-label" x="{_x(x)}" y="{bottom + 14}" font-size="10" text-anchor="middle" fill="#56606b">{escape(text)} UTC</text>'
        )
    banded = [p for p in points if p.sequential is not None]
    if len(banded) > 1:
        upper = [f"{_x(xs(p.ts.timestamp()))},{_x(y(p.sequential[1]))}" for p in banded if p.sequential]
        lower = [f"{_x(xs(p.ts.timestamp()))},{_x(y(p.sequential[0]))}" for p in banded[::-1] if p.sequential]
        body.append(
            f'<polygon class="band" points="{" ".join(upper + lower)}" fill="#1f5fa8" fill-opacity="0.16" stroke="none"/>'
        )
    for p in banded if len(banded) == 1 else ():  # one checkpoint alone: its interval as a wide bar
        if p.sequential is None:
            continue
        px = _x(xs(p.ts.timestamp()))
        body.append(
            f'<line class="band-step" x1="{px}" x2="{px}" y1="{_x(y(p.sequential[0]))}" y2="{_x(y(p.sequential[1]))}" stroke="#1f5fa8" stroke-opacity="0.35" stroke-width="8"><title>{escape(f"{p.ts:%Y-%m-%d %H:%M:%S} UTC: always-valid interval [{_fmt(p.sequential[0], unit)}, {_fmt(p.sequential[1], unit)}]")}</title></line>'
        )
    zy = _x(ys(0.0))
    body.append(
        f'<line class="zero" x1="{_x(xs.x0)}" x2="{_x(xs.x1)}" y1="{zy}" y2="{zy}" stroke="#1d232b"/>'
    )
    if margin is not None and math.isfinite(margin):
        my = _x(y(margin))
        body.append(
            f'<line class="margin" data-value="{margin!r}" x1="{_x(xs.x0)}" x2="{_x(xs.x1)}" y1="{my}" y2="{my}" stroke="#b3261e" stroke-dasharray="6 4"><title>guardrail margin {escape(_fmt(margin, unit))}: harm begins here</title></line>'
        )
        body.append(
            f'<text class="margin-label" x="{_x(xs.x1)}" y="{my}" dy="-3" font-size="10" text-anchor="end" fill="#b3261e">margin {escape(_fmt(margin, unit))}</text>'
        )
    for event in events:
        ex = _x(xs(event.ts.timestamp()))
        colour = EVENT_SHAPES.get(event.kind, "#1d232b")
        body.append(
            f'<line class="event-marker event-{escape(event.kind)}" x1="{ex}" x2="{ex}" y1="{top}" y2="{bottom}" stroke="{colour}" stroke-dasharray="2 3"><title>{escape(event.text)}</title></line>'
        )
    for p in points:
        if p.fixed is None:
            continue
        px = _x(xs(p.ts.timestamp()))
        body.append(
            f'<line class="fixed" x1="{px}" x2="{px}" y1="{_x(y(p.fixed[0]))}" y2="{_x(y(p.fixed[1]))}" stroke="#56606b" stroke-width="1.5"><title>{escape(f"{p.ts:%Y-%m-%d %H:%M:%S} UTC: fixed-horizon interval [{_fmt(p.fixed[0], unit)}, {_fmt(p.fixed[1], unit)}]")}</title></line>'
        )
    estimates = [p for p in points if p.estimate is not None and math.isfinite(p.estimate)]
    if len(estimates) > 1:
        path = " ".join(f"{_x(xs(p.ts.timestamp()))},{_x(y(p.estimate or 0.0))}" for p in estimates)
        body.append(
            f'<polyline class="estimate-line" points="{path}" fill="none" stroke="#1d232b" stroke-width="1.5"/>'
        )
    for p in estimates:
        assert p.estimate is not None
        text = f"{p.ts:%Y-%m-%d %H:%M:%S} UTC: difference {_fmt(p.estimate, unit)} at {p.units:,} units"
        if p.sequential is not None:
            text += f", always-valid [{_fmt(p.sequential[0], unit)}, {_fmt(p.sequential[1], unit)}]"
        body.append(
            f'<circle class="estimate" data-value="{p.estimate!r}" cx="{_x(xs(p.ts.timestamp()))}" cy="{_x(y(p.estimate))}" r="3" fill="#1d232b"><title>{escape(text)}</title></circle>'
        )
    label = f"{metric}: difference over time at {len(points)} checkpoints"
    if estimates:
        latest = estimates[-1]
        label += f", latest {_fmt(latest.estimate or 0.0, unit)}"
        if latest.sequential is not None:
            label += (
                f" (always-valid [{_fmt(latest.sequential[0], unit)}, {_fmt(latest.sequential[1], unit)}])"
            )
    if margin is not None:
        label += f", margin {_fmt(margin, unit)}"
    label += f", {len(events)} release events"
    body.append(
        f'<text class="legend" x="{_x(xs.x0)}" y="{height - 6}" font-size="10" fill="#56606b">dots: estimate · band: always-valid interval · whiskers: fixed-horizon interval · dashed red: margin · dotted: release events</text>'
    )
    return _svg(width, height, label, body, "difference-chart")


@dataclass(frozen=True, slots=True)
class Bar:
    """One span of a waterfall: its name, depth in the tree and offsets (ms) from the trace start."""

    name: str
    depth: int
    start_ms: float
    end_ms: float
    critical: bool
    error: bool = False


def waterfall_chart(title: str, bars: Sequence[Bar], width: float = 720) -> Markup:
    """A trace's span tree as a waterfall: one row per span (depth first), its name indented by
    depth at the left, a bar from its start to its end on a millisecond axis; the spans on the
    critical path (the ones that set the end-to-end time) are filled dark and marked, the
    others light; an error is outlined in red and says so in its title."""
    row, top, label_w = 18, 8, 220
    end = max((b.end_ms for b in bars), default=1.0) or 1.0
    ticks = nice_ticks(0.0, end, 5)
    xs = Scale(0.0, ticks[-1], label_w, width - 40)
    height = top + row * len(bars) + 30
    axis_y = top + row * len(bars) + 4
    body = [
        f'<line class="axis" x1="{_x(xs.x0)}" x2="{_x(xs.x1)}" y1="{axis_y}" y2="{axis_y}" stroke="#8a949e"/>'
    ]
    for t in ticks:
        tx = _x(xs(t))
        body.append(
            f'<line class="grid" data-value="{t!r}" x1="{tx}" x2="{tx}" y1="{top}" y2="{axis_y}" stroke="#e4e7eb"/>'
        )
        body.append(
            f'<text class="tick-label" x="{tx}" y="{axis_y + 14}" font-size="10" text-anchor="middle" fill="#56606b">{escape(f"{t:g} ms")}</text>'
        )
    for i, bar in enumerate(bars):
        y = top + i * row
        fill = "#1f5fa8" if bar.critical else "#b9cce4"
        stroke = ' stroke="#b3261e" stroke-width="1.5"' if bar.error else ""
        x0, x1 = xs(bar.start_ms), xs(bar.end_ms)
        words = f"{bar.name}: {bar.start_ms:,.0f}–{bar.end_ms:,.0f} ms ({bar.end_ms - bar.start_ms:,.0f} ms)"
        words += ", on the critical path" if bar.critical else ""
        words += ", error" if bar.error else ""
        cls = "span critical" if bar.critical else "span"
        body.append(
            f'<g class="{cls}" data-depth="{bar.depth}">'
            f'<text x="{_x(4 + 12 * bar.depth)}" y="{y + 12}" font-size="10" fill="#1d232b">{escape(bar.name[:40])}</text>'
            f'<rect x="{_x(x0)}" y="{y + 3}" width="{_x(max(x1 - x0, 1.0))}" height="{row - 6}" fill="{fill}"{stroke}>'
            f"<title>{escape(words)}</title></rect></g>"
        )
    critical = [b.name for b in bars if b.critical]
    label = f"{title}: {len(bars)} spans over {end:,.0f} ms; critical path: {' → '.join(critical) or 'none'}"
    return _svg(width, height, label, body, "waterfall-chart")

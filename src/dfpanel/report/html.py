"""report.html: one self-contained page (inline CSS, inline SVG plots, base64 PNG thumbnails, no
external assets, no script), readable offline and safe to mail around."""

from __future__ import annotations

import base64
import re
from html import escape

_OTHER = ["#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]  # for specialists that name no colour
VERDICT_COLORS = {"fake": "#c62828", "real": "#2e7d32", "uncertain": "#ef8f00", None: "#616161"}

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;background:#f4f5f7;color:#1d1f23}
main{max-width:1080px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px;word-break:break-all}h2{font-size:17px;margin:26px 0 10px}
.card{background:#fff;border-radius:10px;padding:18px 22px;box-shadow:0 1px 3px rgba(0,0,0,.08);margin-bottom:18px}
.verdict{display:flex;gap:22px;align-items:center;flex-wrap:wrap}
.badge{color:#fff;font-weight:700;font-size:26px;padding:10px 22px;border-radius:8px;text-transform:uppercase;letter-spacing:.04em}
.big{font-size:30px;font-weight:700}.muted{color:#5f6368;font-size:13px}
ul.expl{margin:6px 0 0 0;padding-left:20px;line-height:1.55}
.thumbs{display:flex;gap:10px;flex-wrap:wrap}
.thumb{text-align:center;font-size:12px;color:#5f6368}
.thumb img{height:112px;border-radius:6px;border:3px solid transparent;display:block}
.thumb.moment img{border-color:#c62828}
table{border-collapse:collapse;width:100%;font-size:13px}
td,th{text-align:left;padding:5px 8px;border-bottom:1px solid #eceff1;vertical-align:top}
th{color:#5f6368;font-weight:600}
code{font-size:12px;background:#f1f3f4;padding:1px 4px;border-radius:3px}
svg text{font-family:inherit}
.err{color:#c62828;font-weight:600}
.demo{background:#fff3cd;border:2px solid #ef8f00;color:#4e3400;border-radius:10px;padding:14px 18px;margin:0 0 18px;font-size:15px;line-height:1.5}
.demo b{text-transform:uppercase;letter-spacing:.04em}
.note{background:#eceff1;border-radius:10px;padding:10px 16px;margin:0 0 18px;font-size:14px;color:#37474f}
"""


def training_banner(td: dict | None) -> str:
    """The banner shown at the top of a page when a specialist learned only from synthetic data, and
    the neutral note when some specialists' training data is unknown ('' when neither)."""
    if not td:
        return ""
    out = ""
    if td.get("notice"):
        head, _, rest = td["notice"].partition(": ")
        out += f'<div class="demo" role="alert"><b>{escape(head)}</b>: {_code(rest)}</div>'
    if td.get("note"):
        out += f'<div class="note">{_code(td["note"])}</div>'
    return out


def _code(text: str) -> str:
    """Escaped text with `commands` set as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(text))


def _color(s: dict, i: int) -> str:
    """The specialist's own colour: the report's (new reports carry it, so rendering one imports no
    model code: the web service's process holds none), else its class's, else a spare one."""
    if s.get("color"):
        return s["color"]
    from dfpanel.models.specialists.base import find_specialist

    cls = find_specialist(s["name"])
    return (cls.color if cls is not None and cls.color else None) or _OTHER[i % len(_OTHER)]


def _pct(p: float | None) -> str:
    return "—" if p is None else f"{100 * p:.0f}%"


def bars_svg(report: dict, width: int = 1000) -> str:
    """One horizontal bar per specialist (probability of fake), threshold line, abstentions greyed."""
    specs = report["specialists"]
    row, left, right = 34, 230, 70
    panel_p = report["panel"]["probability"]
    h = row * (len(specs) + 1) + 34
    plot = width - left - right
    thr = report["panel"]["threshold"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {h}" width="100%" role="img" '
             f'aria-label="specialist scores">']
    for k in range(0, 11, 2):
        x = left + plot * k / 10
        parts.append(f'<line x1="{x:.1f}" y1="4" x2="{x:.1f}" y2="{h - 24}" stroke="#eceff1"/>')
        parts.append(f'<text x="{x:.1f}" y="{h - 8}" font-size="11" text-anchor="middle" fill="#5f6368">{k * 10}%</text>')
    # The panel's own bar first: the threshold line belongs to it.
    parts.append(f'<text x="{left - 10}" y="{8 + 17}" font-size="13" font-weight="700" text-anchor="end">Panel</text>')
    if panel_p is not None:
        color = VERDICT_COLORS.get(report["verdict"], "#616161")
        parts.append(f'<rect x="{left}" y="{8 + 3}" width="{plot * panel_p:.1f}" height="20" rx="3" fill="{color}"/>')
        parts.append(f'<text x="{left + plot * panel_p + 6:.1f}" y="{8 + 18}" font-size="12" font-weight="700">{_pct(panel_p)}</text>')
    for i, s in enumerate(specs):
        y = 8 + (i + 1) * row
        label = f"{escape(s['title'])} ({escape(s['name'].upper())})"
        parts.append(f'<text x="{left - 10}" y="{y + 17}" font-size="13" text-anchor="end">{label}</text>')
        if s["status"] == "scored":
            w = plot * s["probability"]
            parts.append(f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="20" rx="3" fill="{_color(s, i)}"/>')
            parts.append(f'<text x="{left + w + 6:.1f}" y="{y + 18}" font-size="12" font-weight="600">{_pct(s["probability"])}</text>')
            if s.get("gated"):  # samples its gate left out (e.g. AV: silent clips)
                why = ", ".join(escape(r) for r in (s.get("gated_reasons") or {}))
                parts.append(f'<text x="{left + w + 52:.1f}" y="{y + 18}" font-size="11" fill="#5f6368">'
                             f'{s["gated"]} of {s["gated"] + len(s["samples"])} samples left out: {why}</text>')
        else:
            parts.append(f'<rect x="{left}" y="{y + 3}" width="{plot}" height="20" rx="3" fill="#eceff1" stroke="#cfd8dc" stroke-dasharray="4 3"/>')
            parts.append(f'<text x="{left + 10}" y="{y + 18}" font-size="12" fill="#5f6368">abstained: {escape(s["reason"] or "")}</text>')
    x = left + plot * thr
    parts.append(f'<line x1="{x:.1f}" y1="2" x2="{x:.1f}" y2="{h - 24}" stroke="#1d1f23" stroke-width="1.5" stroke-dasharray="5 3"/>')
    parts.append(f'<text x="{x + 4:.1f}" y="{h - 26}" font-size="11" fill="#1d1f23">panel threshold {_pct(thr)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def timeline_svg(report: dict, width: int = 1000, height: int = 300) -> str:
    """Scores over the video's time: each specialist's samples, the panel line, the threshold with its
    uncertainty band, and the most suspicious moments marked."""
    tl = report["timeline"]
    left, right, top, bottom = 46, 20, 14, 40
    pw, ph = width - left - right, height - top - bottom
    duration = report["video"].get("duration") or 0.0
    ends = [smp["end"] for s in report["specialists"] for smp in s["samples"]] + tl["times"]
    t_max = max([duration] + ends) or 1.0

    def X(t: float) -> float:
        return left + pw * t / t_max

    def Y(p: float) -> float:
        return top + ph * (1 - p)

    thr, margin = report["panel"]["threshold"], report["panel"]["margin"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img" '
             f'aria-label="timeline of scores">']
    lo, hi = max(0.0, thr - margin), min(1.0, thr + margin)
    parts.append(f'<rect x="{left}" y="{Y(hi):.1f}" width="{pw}" height="{Y(lo) - Y(hi):.1f}" fill="#fff3e0"/>')
    for k in range(0, 11, 2):
        parts.append(f'<line x1="{left}" y1="{Y(k / 10):.1f}" x2="{left + pw}" y2="{Y(k / 10):.1f}" stroke="#eceff1"/>')
        parts.append(f'<text x="{left - 6}" y="{Y(k / 10) + 4:.1f}" font-size="11" text-anchor="end" fill="#5f6368">{k * 10}%</text>')
    step = _nice_step(t_max)
    t = 0.0
    while t <= t_max + 1e-9:
        parts.append(f'<line x1="{X(t):.1f}" y1="{top + ph}" x2="{X(t):.1f}" y2="{top + ph + 4}" stroke="#5f6368"/>')
        parts.append(f'<text x="{X(t):.1f}" y="{top + ph + 17}" font-size="11" text-anchor="middle" fill="#5f6368">{t:g} s</text>')
        t += step
    parts.append(f'<line x1="{left}" y1="{Y(thr):.1f}" x2="{left + pw}" y2="{Y(thr):.1f}" stroke="#1d1f23" stroke-dasharray="5 3"/>')
    for m in tl["moments"]:
        x = X(m["time"])
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + ph}" stroke="#c62828" stroke-width="1" stroke-opacity=".5"/>')
        parts.append(f'<path class="moment" d="M{x - 6:.1f},{top - 2} L{x + 6:.1f},{top - 2} L{x:.1f},{top + 8} Z" fill="#c62828"/>')
    for i, s in enumerate(report["specialists"]):
        if s["status"] != "scored":
            continue
        c = _color(s, i)
        for smp in s["samples"]:
            if s["sample_kind"] == "clip":  # a clip covers a span: draw it as a segment
                parts.append(f'<line x1="{X(smp["start"]):.1f}" y1="{Y(smp["prob"]):.1f}" x2="{X(smp["end"]):.1f}" '
                             f'y2="{Y(smp["prob"]):.1f}" stroke="{c}" stroke-width="3" stroke-linecap="round"/>')
            else:
                parts.append(f'<circle cx="{X(smp["time"]):.1f}" cy="{Y(smp["prob"]):.1f}" r="2.6" fill="{c}" fill-opacity=".8"/>')
    pts = [(t, p) for t, p in zip(tl["times"], tl["panel"]) if p is not None]
    if pts:
        # Break the panel line between clips: no frames were analysed in those gaps.
        gaps = sorted(b[0] - a[0] for a, b in zip(pts, pts[1:]))
        jump = 2.5 * gaps[len(gaps) // 2] if gaps else 0.0
        d = []
        for j, (t, p) in enumerate(pts):
            move = j == 0 or (t - pts[j - 1][0]) > jump
            d.append(f"{'M' if move else 'L'}{X(t):.1f},{Y(p):.1f}")
        parts.append(f'<path d="{" ".join(d)}" fill="none" stroke="#1d1f23" stroke-width="2.2" stroke-linejoin="round"/>')
    # legend
    lx = left + 8
    items = [("panel", "#1d1f23")] + [(s["name"].upper(), _color(s, i)) for i, s in enumerate(report["specialists"])
                                      if s["status"] == "scored"]
    for name, c in items:
        parts.append(f'<rect x="{lx}" y="{height - 14}" width="12" height="8" fill="{c}"/>')
        parts.append(f'<text x="{lx + 16}" y="{height - 6}" font-size="11">{escape(name)}</text>')
        lx += 30 + 8 * len(name)
    parts.append(f'<text x="{width - right}" y="{height - 6}" font-size="11" text-anchor="end" fill="#c62828">'
                 f'▼ most suspicious moments · shaded: uncertain band</text>')
    parts.append("</svg>")
    return "".join(parts)


def _nice_step(span: float) -> float:
    for s in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600):
        if span / s <= 10:
            return float(s)
    return span / 10


def _thumbs_html(thumbnails: list[dict]) -> str:
    if not thumbnails:
        return '<p class="muted">No face thumbnails.</p>'
    cells = []
    for t in thumbnails:
        b64 = base64.b64encode(t["png"]).decode("ascii")
        cls = "thumb moment" if t.get("moment") else "thumb"
        note = " · suspicious" if t.get("moment") else ""
        cells.append(f'<div class="{cls}"><img alt="face at {t["time"]:.2f} s" src="data:image/png;base64,{b64}">'
                     f'{t["time"]:.2f} s{note}</div>')
    return f'<div class="thumbs">{"".join(cells)}</div>'


def _rows(pairs: list[tuple[str, str]]) -> str:
    return "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in pairs)


def _truncation_banner(video: dict) -> str:
    from dfpanel.report.explain import truncation_sentence

    said = truncation_sentence(video)
    return f'<div class="note" role="alert"><b>Truncated file</b>: {escape(said)}</div>' if said else ""


def render_html(report: dict, thumbnails: list[dict] | None = None, toolbar: str = "", extra_css: str = "") -> str:
    """`toolbar`: HTML put first in the page and `extra_css` its style (the web service's links and
    buttons round a report)."""
    v = report["video"]
    verdict = report["verdict"]
    color = VERDICT_COLORS.get(verdict, "#616161")
    panel = report["panel"]
    name = escape(v.get("name") or v["path"])
    expl = "".join(f"<li>{escape(s)}</li>" for s in report["explanation"])
    head = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>dfpanel · {name}</title>
<style>{CSS}{extra_css}</style></head><body><main>
{toolbar}{training_banner(report.get("training_data")) if report["status"] == "analysed" else ""}
{_truncation_banner(v)}
<h1>{name}</h1><div class="muted">{escape(v['path'])} · analysed {escape(report['created'])} · dfpanel {escape(report['dfpanel_version'])}</div>"""
    if report["status"] != "analysed":
        err = report["error"] or {}
        body = f"""<div class="card"><div class="verdict"><div class="badge" style="background:#616161">not analysed</div>
<div class="err">{escape(err.get('kind', ''))}: {escape(err.get('message', ''))}</div></div>
<ul class="expl">{expl}</ul></div>"""
        return head + body + "</main></body></html>"
    strongest = next((s for s in report["specialists"] if s["name"] == report.get("strongest")), None)
    strong_txt = f"{escape(strongest['title'])} ({_pct(strongest['probability'])})" if strongest else "—"
    mode = "fitted panel" if panel["fitted"] else "equal weights (panel not fitted)"
    faces = report["faces"]
    timings = report["timings"]
    timing_txt = ", ".join(f"{escape(k)} {timings[k]:.2f} s" for k in timings if not k.startswith("model_"))
    weights = "".join(
        f"<tr><td>{escape(k.upper())}</td><td>{escape(str(w.get('file') or ''))}</td><td>{escape(str(w.get('stage') or ''))}</td>"
        f"<td><code>{escape(str(w.get('sha256') or '')[:16])}</code></td></tr>"
        for k, w in report["weights"].items()
    )
    dur = v.get("duration")
    details = _rows([
        ("Video", f"{v.get('width') or '?'}×{v.get('height') or '?'}, {escape(str(v.get('codec') or '?'))}, "
                  f"{(v.get('fps') or 0):.2f} fps, {f'{dur:.2f} s' if dur else '?'}, "
                  f"{'with' if v.get('has_audio') else 'no'} audio"),
        ("Faces", f"{faces['tracks']} track(s); {faces['frames']} frames analysed, "
                  f"{faces['detected_frames']} detected directly (others tracked)"),
        ("Panel", f"{mode}; threshold {_pct(panel['threshold'])} ({escape(str(panel.get('threshold_method', '')))}), "
                  f"uncertain within ±{100 * panel['margin']:.0f} points"),
        ("Backend", f"{escape(str(report.get('backend', '')))} on {escape(str(report.get('device', '')))}"),
        ("Timings", timing_txt),
    ])
    body = f"""
<div class="card verdict"><div class="badge" style="background:{color}">{escape(verdict or 'none')}</div>
<div><div class="big">{_pct(panel['probability'])}</div><div class="muted">panel probability of manipulation</div></div>
<div><div style="font-size:16px;font-weight:600">{strong_txt}</div><div class="muted">strongest specialist</div></div>
</div>
<div class="card"><h2 style="margin-top:0">What the panel saw</h2><ul class="expl">{expl}</ul></div>
<div class="card"><h2 style="margin-top:0">Faces analysed</h2>{_thumbs_html(thumbnails or [])}</div>
<div class="card"><h2 style="margin-top:0">Specialists</h2>{bars_svg(report)}</div>
<div class="card"><h2 style="margin-top:0">Over time</h2>{timeline_svg(report)}</div>
<div class="card"><h2 style="margin-top:0">Details</h2><table>{details}</table>
<h2>Weights</h2><table><tr><th>Specialist</th><th>File</th><th>Stage</th><th>sha256</th></tr>{weights}</table></div>
"""
    return head + body + "</main></body></html>"

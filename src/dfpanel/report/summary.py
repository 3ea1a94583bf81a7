"""A folder run's summary: one row per video (verdict, probability, strongest specialist, each
specialist's score, failure reason, link to its report) as summary.csv and summary.html."""

from __future__ import annotations

import csv
import io
import os
from html import escape
from pathlib import Path

from dfpanel.models.specialists.base import specialist_order
from dfpanel.report.html import CSS, VERDICT_COLORS, training_banner
from dfpanel.report.training import summary_cell, training_data
from dfpanel.report.write import atomic_write

BASE_COLUMNS = ["video", "path", "status", "verdict", "probability", "threshold", "strongest", "faces", "reason",
                "training_data", "report"]


def summary_row(report: dict, report_dir: str | None = None) -> dict:
    row = {
        "video": report["video"].get("name") or Path(report["video"]["path"]).name,
        "path": report["video"]["path"],
        "status": report["status"],
        "verdict": report["verdict"] or "",
        "probability": "" if report["panel"]["probability"] is None else round(report["panel"]["probability"], 4),
        "threshold": round(report["panel"]["threshold"], 4),
        "strongest": report.get("strongest") or "",
        "faces": report["faces"]["tracks"],
        "reason": (report.get("error") or {}).get("message", ""),
        "training_data": summary_cell(report.get("training_data")),
        "report": f"{report_dir}/report.html" if report_dir else "",
        "_training_data": report.get("training_data"),  # for the page's banner; not a column
    }
    for s in report["specialists"]:
        row[s["name"]] = "abstained" if s["status"] == "abstained" else round(s["probability"], 4)
    return row


def merged_training_data(rows: list[dict]) -> dict | None:
    """One training_data for a folder run: every specialist that was synthetic-only (or unknown) in any row."""
    tds = [r.get("_training_data") for r in rows if r.get("_training_data")]
    if not tds:
        return None
    weights: dict[str, dict] = {}
    for td in tds:
        for kind, key in (("real", "real"), ("unknown", "unknown"), ("synthetic", "synthetic_only")):
            for name in td.get(key, []):
                weights.setdefault(name, {})["training_data"] = kind  # the last (most cautious) kind wins
    return training_data(weights)


def write_summary(rows: list[dict], out_dir: str | os.PathLike) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec_cols = sorted({k for r in rows for k in r if k not in BASE_COLUMNS and not k.startswith("_")},
                       key=specialist_order)
    cols = BASE_COLUMNS[:7] + spec_cols + BASE_COLUMNS[7:]
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c, "") for c in cols})
    # each file whole or not at all (a temporary name, then os.replace)
    csv_path = atomic_write(out_dir / "summary.csv", buf.getvalue(), newline="")
    html_path = atomic_write(out_dir / "summary.html", render_summary_html(rows, cols))
    return csv_path, html_path


def render_summary_html(rows: list[dict], cols: list[str]) -> str:
    counts: dict[str, int] = {}
    for r in rows:
        key = r["verdict"] or "failed"
        counts[key] = counts.get(key, 0) + 1
    head = "".join(f"<th>{escape(c.upper() if len(c) == 2 else c)}</th>" for c in cols if c not in ("path", "report"))
    body = []
    for r in rows:
        cells = []
        for c in cols:
            if c in ("path", "report"):
                continue
            val = r.get(c, "")
            if c == "video" and r.get("report"):
                cells.append(f'<td><a href="{escape(r["report"])}">{escape(str(val))}</a></td>')
            elif c == "strongest":
                cells.append(f"<td>{escape(str(val).upper())}</td>")
            elif c == "verdict":
                color = VERDICT_COLORS.get(val or None, "#616161")
                cells.append(f'<td><b style="color:{color}">{escape(str(val or "not analysed"))}</b></td>')
            elif isinstance(val, float):
                cells.append(f"<td>{100 * val:.1f}%</td>")
            else:
                cells.append(f"<td>{escape(str(val))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    tally = " · ".join(f"{escape(k)}: {v}" for k, v in sorted(counts.items()))
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>dfpanel summary</title>'
            f"<style>{CSS}</style></head><body><main>{training_banner(merged_training_data(rows))}"
            f"<h1>dfpanel summary</h1>"
            f'<div class="muted">{len(rows)} video(s) · {tally}</div>'
            f'<div class="card" style="margin-top:14px;overflow-x:auto"><table><tr>{head}</tr>{"".join(body)}</table></div>'
            f"</main></body></html>")

"""The cross-dataset table as the field reports it: one row per test set (or specialist x test set),
video-level AUC, EER, AP, log-loss, accuracy, F1 and bias, plus the frame-level AUC.

Input is the results dict of `evaluate_weights` (or its metrics.json, where NaN was written as null).
"""

from __future__ import annotations

import math

# (header, level, key, percent?)
COLUMNS = (
    ("AUC", "video", "auc", True),
    ("EER", "video", "eer", True),
    ("AP", "video", "ap", True),
    ("Log-loss", "video", "log_loss", False),
    ("Acc", "video", "accuracy", True),
    ("F1", "video", "f1", True),
    ("Bias", "video", "bias", True),
    ("Frame AUC", "frame", "auc", True),
)
MISSING = "n/a"


def _fmt(value, percent: bool) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return f"{100 * value:.1f}" if percent else f"{value:.3f}"


BREAKDOWNS = {"by_fake_type": "Fake type", "by_dataset": "Dataset"}


def _parts(ts: dict, breakdown: str | None) -> list[tuple[str | None, str]]:
    """(part name, where its metrics are) per row of one test set."""
    if breakdown is None:
        return [(None, "overall")]
    return [(name, f"{breakdown}/{name}") for name in ts["video"][breakdown]]


def _lookup(level: dict, where: str) -> dict:
    section, _, name = where.partition("/")
    return level[section] if not name else level[section].get(name, {})


def table_rows(results: dict, breakdown: str | None = None) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted rows (percent columns in %, log-loss as is). `breakdown` = None for one row
    per test set, or "by_fake_type" / "by_dataset" for one row per fake type / dataset within it."""
    if breakdown is not None and breakdown not in BREAKDOWNS:
        raise ValueError(f"breakdown must be None or one of {', '.join(BREAKDOWNS)}")
    several = len(results["runs"]) > 1
    headers = (["Specialist"] if several else []) + ["Train", "Test set"]
    headers += ([BREAKDOWNS[breakdown]] if breakdown else []) + ["Videos"]
    headers += [f"{h} %" if pct else h for h, _, _, pct in COLUMNS]
    rows = []
    for run in results["runs"]:
        info = run["weights"]
        for ts in run["test_sets"]:
            for part, where in _parts(ts, breakdown):
                video = _lookup(ts["video"], where)
                row = ([info.get("label") or info.get("specialist", "")] if several else []) + [
                    info.get("stage") or MISSING,
                    ts["name"],
                ]
                row += ([part] if breakdown else []) + [str(video.get("n", ""))]
                row += [_fmt(_lookup(ts[level], where).get(key), pct) for _, level, key, pct in COLUMNS]
                rows.append(row)
    return headers, rows


def rich_table(results: dict, breakdown: str | None = None):
    from rich.table import Table

    headers, rows = table_rows(results, breakdown)
    how = results.get("aggregate", "mean")
    per = f", per {BREAKDOWNS[breakdown].lower()}" if breakdown else ""
    table = Table(title=f"Cross-dataset evaluation{per} (video level, {how} of samples; split {results.get('split')})")
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i < headers.index("Videos") else "right")
    for row in rows:
        table.add_row(*row)
    return table


def markdown_table(results: dict, breakdown: str | None = None) -> str:
    """A GitHub-markdown table of the same figures, for docs and the README."""
    headers, rows = table_rows(results, breakdown)
    lines = ["| " + " | ".join(headers) + " |"]
    lines.append("|" + "|".join("---" if i < headers.index("Videos") else "---:" for i in range(len(headers))) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"

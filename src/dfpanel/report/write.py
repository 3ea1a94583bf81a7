"""Write one video's report.json and report.html into its folder."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from dfpanel.report.html import render_html


def write_report(report: dict, folder: str | os.PathLike, thumbnails: list[dict] | None = None) -> tuple[Path, Path]:
    """The page is rendered first so report.json can carry the time the report step took."""
    t = time.perf_counter()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, html_path = folder / "report.json", folder / "report.html"
    html_path.write_text(render_html(report, thumbnails), encoding="utf-8")
    report["timings"]["report"] = time.perf_counter() - t
    json_path.write_text(json.dumps(report, indent=1, allow_nan=False), encoding="utf-8")
    return json_path, html_path

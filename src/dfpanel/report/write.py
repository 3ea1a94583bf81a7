"""Write one video's report.json and report.html into its folder, each atomically: to a temporary
name in the same folder, then os.replace, so a full disk or a crash never leaves a torn file (an old
report stays whole, or there is none)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from dfpanel.atomic import atomic_write  # noqa: F401  (summary.py and tests import it from here too)
from dfpanel.report.html import render_html


def write_report(report: dict, folder: str | os.PathLike, thumbnails: list[dict] | None = None) -> tuple[Path, Path]:
    """The page is rendered first so report.json can carry the time the report step took. Raises
    OSError when a file cannot be written (the caller decides what that means for the run)."""
    t = time.perf_counter()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, html_path = folder / "report.json", folder / "report.html"
    atomic_write(html_path, render_html(report, thumbnails))
    report["timings"]["report"] = time.perf_counter() - t
    atomic_write(json_path, json.dumps(report, indent=1, allow_nan=False))
    return json_path, html_path

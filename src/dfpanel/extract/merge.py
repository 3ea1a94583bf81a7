"""`dfpanel cache merge OUT CACHE...`: join caches extracted by shards into one.

Entries are copied (or moved) into OUT under the same relative folder, each one atomically (copied
to a temp folder, then renamed); the index is rebuilt from the union of the rows (a video present in
several caches keeps the last one given); the extraction reports are merged, and a failure that
succeeded in any cache is dropped.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import asdict
from pathlib import Path

from dfpanel.errors import DataError
from dfpanel.extract.cache import INDEX_FILE, REPORT_FILE, CacheIndexRow, FaceTrackCache
from dfpanel.extract.report import failure_key, merge_reports, read_report


def merge_caches(out: str | os.PathLike, sources: list[str | os.PathLike], move: bool = False) -> dict:
    out = Path(out)
    caches = [FaceTrackCache(s) for s in sources]  # DataError for a folder that is not a cache
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[tuple[str, str], CacheIndexRow] = {}
    if (out / INDEX_FILE).is_file():
        rows.update({(r.dataset, r.id): r for r in FaceTrackCache(out).rows()})
    copied = missing = 0
    for cache in caches:
        same = cache.root.resolve() == out.resolve()
        for row in cache.rows():
            src = cache.root / row.dir
            if not (src / "meta.json").is_file():
                missing += 1
                continue
            if not same:
                _place(src, out / row.dir, move)
                copied += 1
            rows[(row.dataset, row.id)] = row

    tmp = out / f".{INDEX_FILE}.{uuid.uuid4().hex[:8]}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        for key in sorted(rows):
            fh.write(json.dumps(asdict(rows[key])) + "\n")
    os.replace(tmp, out / INDEX_FILE)

    succeeded = {failure_key(d, i) for d, i in rows}
    reports = [read_report(out)] + [read_report(c.root) for c in caches if c.root.resolve() != out.resolve()]
    report = merge_reports(reports, succeeded)
    (out / REPORT_FILE).write_text(json.dumps(report, indent=1))
    return {"entries": len(rows), "copied": copied, "missing": missing, "failed": report["n_failed"], "out": str(out)}


def _place(src: Path, dst: Path, move: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".tmp-{dst.name}-{uuid.uuid4().hex[:8]}"
    try:
        if move:
            shutil.move(str(src), str(tmp))
        else:
            shutil.copytree(src, tmp)
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(tmp, dst)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"{src}: could not {'move' if move else 'copy'} the entry to {dst} ({exc}); check disk space and permissions") from None

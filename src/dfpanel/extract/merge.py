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
from dfpanel.extract.cache import (
    INDEX_FILE,
    REPORT_FILE,
    CacheIndexRow,
    FaceTrackCache,
    has_cache_spec,
    read_cache_spec,
    record_cache_spec,
)
from dfpanel.extract.report import failure_key, merge_reports, read_report
from dfpanel.extract.spec import check_same_views


def merge_caches(out: str | os.PathLike, sources: list[str | os.PathLike], move: bool = False) -> dict:
    out = Path(out)
    caches = [FaceTrackCache(s) for s in sources]  # DataError for a folder that is not a cache
    _check_specs(out, caches)
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


def _check_specs(out: Path, caches: list[FaceTrackCache]) -> None:
    """Refuse (one line) to merge caches extracted with different pixel/audio-shaping settings: the
    merged cache would mix two kinds of views. OUT records the common spec."""
    ref_name, ref = (f"cache {out}", read_cache_spec(out)) if has_cache_spec(out) or (out / INDEX_FILE).is_file() \
        else (f"cache {caches[0].root}", caches[0].input_spec)
    for cache in caches:
        check_same_views(cache.input_spec, ref, have_name=f"cache {cache.root}", want_name=ref_name,
                         labels=("this", "that"), fix="merge only caches extracted with the same settings")
    record_cache_spec(out, ref)


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

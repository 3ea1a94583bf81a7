"""`dfpanel cache convert`: a cache stored "full" (lossless PNG crops, caches before compact storage)
rewritten as a compact one, without decoding any video again.

Each entry's crops are packed exactly as `dfpanel extract --store compact` packs a fresh extraction
(`pack_track`), so a converted cache and a re-extracted one hold the same bytes. The new cache gets
its own input spec (the old one with the compact fields): weights trained on it say so, and weights
trained on the old cache keep working with the old cache. Resumable: entries already in the new
cache's index are skipped, and every entry is written atomically (EntryWriter).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from dfpanel.errors import ConfigError, DataError
from dfpanel.extract.cache import (
    INDEX_FILE,
    CacheFullError,
    EntryWriter,
    FaceTrackCache,
    append_index_row,
    disk_full_message,
    is_disk_full,
    record_cache_spec,
)
from dfpanel.extract.compact import pack_track

log = logging.getLogger(__name__)


def convert_cache(src: str | os.PathLike, out: str | os.PathLike, *, face_px: int | None = None,
                  context_px: int | None = None, face_span: float | None = None,
                  native_size: int | None = None, context_quality: int | None = None,
                  progress: Callable[[int, int], None] | None = None) -> dict:
    """Write `src` (a full cache) as a compact cache at `out`. Returns {"converted", "skipped", "frames",
    "bytes_before", "bytes_after"} (bytes of the entries converted in this call)."""
    src, out = Path(src), Path(out)
    cache = FaceTrackCache(src)
    old = cache.input_spec
    if old.store == "compact":
        raise ConfigError(f"{src}: already a compact cache (input_spec store: compact); nothing to convert")
    if out.resolve() == src.resolve():
        raise ConfigError(f"--out {out} is the cache itself; convert into a new folder (the old cache stays readable)")
    changes = {"store": "compact"}
    for key, value in (("face_px", face_px), ("context_px", context_px), ("face_span", face_span),
                       ("native_size", native_size), ("context_quality", context_quality)):
        if value is not None:
            changes[key] = value
    spec = old.replace(**changes)
    record_cache_spec(out, spec)
    done = {(r.dataset, r.id) for r in FaceTrackCache(out).rows()} if (out / INDEX_FILE).is_file() else set()
    rows = cache.rows()
    stats = {"converted": 0, "skipped": 0, "frames": 0, "bytes_before": 0, "bytes_after": 0}
    for k, row in enumerate(rows):
        if (row.dataset, row.id) in done:
            stats["skipped"] += 1
            continue
        entry = cache.entry(row)
        crops = [entry.crop(i) for i in range(len(entry))]
        meta, files = pack_track(entry.meta, crops, spec)
        meta.input_spec = spec.to_dict()
        writer = EntryWriter(out, row.dataset, meta.video_id)
        try:
            for rel, data in files.items():
                writer.add_file(rel, data)
            if entry.meta.audio is not None:
                writer.add_file(entry.meta.audio.file, entry.read_bytes(entry.meta.audio.file))
            folder = writer.commit(meta)
        except OSError as exc:
            writer.abort()
            if is_disk_full(exc):
                raise CacheFullError(disk_full_message(out, f"{row.dataset}/{row.id}")) from None
            raise DataError(f"{entry.folder}: could not convert ({exc}); delete {out / row.dir} and re-run") from None
        except BaseException:
            writer.abort()
            raise
        new_row = type(row)(**{**asdict(row), "dir": folder.relative_to(out).as_posix()})
        append_index_row(out, new_row)
        stats["converted"] += 1
        stats["frames"] += len(crops)
        stats["bytes_before"] += _folder_bytes(entry.folder)
        stats["bytes_after"] += _folder_bytes(folder)
        if progress is not None:
            progress(k + 1, len(rows))
    report = out / "convert_report.json"
    report.write_text(json.dumps({"source": str(src), **stats}, indent=1) + "\n", encoding="utf-8")
    return stats


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())

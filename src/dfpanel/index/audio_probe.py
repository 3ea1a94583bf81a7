"""Does a video file carry an audio track? Answered by opening its container with PyAV.

Only the container header is read (no decoding), so it is cheap; files PyAV cannot open give None
("unknown") rather than an error, because a broken video is extract's business, not index's.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dfpanel.index.manifest import VideoRecord


def has_audio(path: str | Path) -> bool | None:
    import av

    try:
        with av.open(str(path)) as container:
            return len(container.streams.audio) > 0
    except Exception:  # any container/codec/OS error means "unknown", never a crash
        return None


def probe_records(records: list[VideoRecord], workers: int = 4) -> None:
    """Fill `has_audio` on records that do not know it yet (in place)."""
    todo = [r for r in records if r.has_audio is None]
    if not todo:
        return
    # Opening a container is mostly file I/O in C, so threads overlap it well.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for r, answer in zip(todo, pool.map(lambda rec: has_audio(rec.abspath), todo)):
            r.has_audio = answer

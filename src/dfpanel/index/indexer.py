"""`index_dataset`: pick the layout, let its adapter read the dataset, then do what all layouts share.

Shared steps, in order: make ids unique, stamp the absolute root, apply a `dfpanel synth` sidecar,
probe audio where asked, and refuse an empty result.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path

from dfpanel.errors import DataError
from dfpanel.index.audio_probe import probe_records
from dfpanel.index.base import IndexOptions, detect_layout, get_layout
from dfpanel.index.manifest import VideoRecord
from dfpanel.index.sidecar import apply_sidecar, read_sidecar


def index_dataset(
    root: str | os.PathLike,
    dataset: str | None = None,
    *,
    compression: str = "c23",
    dfdc_chunks: int = 10,
    probe_audio: bool | None = None,
    notes: list[str] | None = None,
) -> list[VideoRecord]:
    """One `VideoRecord` per video of the dataset at `root`, with splits, groups and labels.

    `dataset` is one of LAYOUT_NAMES, or None to detect it. `probe_audio` None uses the layout's
    default (probe only `folder`); True probes every row whose dataset does not state it; False never.
    `notes`, when given, receives the adapter's warnings worth repeating in a summary (also logged).
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found; give the folder that holds the dataset")
    layout = get_layout(dataset or detect_layout(root))
    name = layout.name
    options = IndexOptions(compression=compression, dfdc_chunks=dfdc_chunks, probe_audio=probe_audio)
    records = layout.index(root, options)
    if notes is not None:
        notes.extend(options.notes)
    if not records:
        raise DataError(f"{root}: no videos found for dataset {name}; it should hold {layout.markers}")

    _make_ids_unique(records)
    for r in records:
        r.root = str(root)
    apply_sidecar(records, read_sidecar(root))  # also marks each row synthetic or not
    if layout.probe_audio_by_default if probe_audio is None else probe_audio:
        probe_records(records)
    return records


def _make_ids_unique(records: list[VideoRecord]) -> None:
    """safe_id can map two paths to one id ("a b.mp4", "a-b.mp4"); suffix those with a path hash."""
    counts = Counter(r.id for r in records)
    for r in records:
        if counts[r.id] > 1:
            r.id = f"{r.id}__{hashlib.sha1(r.path.encode()).hexdigest()[:8]}"

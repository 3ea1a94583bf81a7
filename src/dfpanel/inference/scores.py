"""Score every sample of a cache with one specialist: the table evaluation and the panel fit read."""

from __future__ import annotations

import os
from collections.abc import Iterable

import pandas as pd
import torch

from dfpanel.extract.cache import FaceTrackCache
from dfpanel.index.manifest import VideoRecord, read_manifest
from dfpanel.inference.aggregate import GATE_COLUMN
from dfpanel.inference.batches import (
    gate_of,
    predict_batches,
    torch_predict,
)
from dfpanel.views.samples import select_rows, specialist_dataset

COLUMNS = ["video_id", "dataset", "label", "fake_type", "split", "group", "position", "time", "logit", "prob", GATE_COLUMN]


def _manifest_ids(manifest) -> set[str] | None:
    if manifest is None:
        return None
    if isinstance(manifest, (str, os.PathLike)):
        return {r.id for r in read_manifest(manifest)}
    return {r.id if isinstance(r, VideoRecord) else str(r) for r in manifest}


def predict_scores(
    model,
    cache_root: str | os.PathLike,
    *,
    manifest: str | os.PathLike | Iterable[VideoRecord] | None = None,
    split: str | None = None,
    batch_size: int = 16,
    device: str = "cpu",
    num_workers: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """One row per sample (`sample_groups`: every cached frame, or every clip_len window of the cached
    clips for clip specialists) of the selected videos, scored by `predict_batches`: video_id, dataset,
    label, fake_type, split, group, position (first frame), time (s), logit, prob (sigmoid of logit),
    gate (the model's gate reason, `sample_gates`: why the sample holds no evidence; None when it
    counts). Gated samples are scored too; `aggregate_videos` and the metrics leave them out."""
    rows = select_rows(FaceTrackCache(cache_root).rows(), split=split, ids=_manifest_ids(manifest))
    # The dataset runs the model's gate (AV) on each item: its meta["gate"] says why it holds no evidence.
    dataset = specialist_dataset(model, cache_root, rows, gate=gate_of(model))
    was_training = model.training
    model = model.to(device).eval()
    records: list[dict] = []
    bar = _progress(progress, -(-len(dataset) // batch_size))
    try:
        for logits, (_, _, meta) in predict_batches(dataset, torch_predict(model, device), batch_size=batch_size,
                                                    num_workers=num_workers):
            for j, logit in enumerate(logits.tolist()):
                row = rows[int(meta["video"][j])]
                records.append(
                    {
                        "video_id": row.id,
                        "dataset": row.dataset,
                        "label": int(row.label),
                        "fake_type": row.fake_type,
                        "split": row.split,
                        "group": row.group,
                        "position": int(meta["position"][j]),
                        "time": float(meta["time"][j]),
                        "logit": float(logit),
                        GATE_COLUMN: meta["gate"][j] or None,
                    }
                )
            if bar is not None:
                bar[0].advance(bar[1])
    finally:
        if bar is not None:
            bar[0].stop()
        model.train(was_training)
    frame = pd.DataFrame.from_records(records, columns=[c for c in COLUMNS if c != "prob"])
    frame["prob"] = torch.sigmoid(torch.tensor(frame["logit"].to_numpy(dtype="float64"))).numpy()
    return frame[COLUMNS]


def _progress(enabled: bool, total: int):
    if not enabled:
        return None
    from rich.progress import Progress

    bar = Progress(transient=True)
    task = bar.add_task("scoring", total=total)
    bar.start()
    return bar, task

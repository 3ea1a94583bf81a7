"""`dfpanel panel fit`: score validation videos with every specialist in a weights folder, aggregate
per video exactly as detection does, mask what detection would abstain on (AV without audio), and
fit the combiner."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from dfpanel.errors import DataError
from dfpanel.inference.aggregate import aggregate_videos, auroc, check_how
from dfpanel.panel.combiner import DEFAULT_MARGIN, Panel, fit_panel


def video_logit_table(scores: Mapping[str, "object"], has_audio: Mapping[tuple[str, str], bool] | None = None,
                      needs_audio: set[str] | None = None, how: str = "mean"):
    """scores: specialist -> per-sample DataFrame (predict_scores columns). Returns a DataFrame indexed
    by (dataset, video_id) with `label` and one video-level logit column per specialist (`aggregate_videos`,
    the aggregation detection uses), NaN where that specialist has no samples or would abstain.
    `needs_audio` None: the registered specialists whose class says they need audio."""
    import pandas as pd

    if needs_audio is None:
        from dfpanel.models.specialists.base import find_specialist

        needs_audio = {n for n in scores if getattr(find_specialist(n), "needs_audio", False)}

    cols, labels = {}, {}
    for name, df in scores.items():
        if df.empty:
            continue
        v = aggregate_videos(df, how).set_index(["dataset", "video_id"])
        z = v["logit"].copy()
        if name in needs_audio and has_audio is not None:
            silent = [k for k in z.index if not has_audio.get(k, True)]
            z.loc[silent] = np.nan
        cols[name] = z
        labels.update(v["label"].to_dict())
    if not cols:
        raise DataError("no validation samples were scored; check --manifest and --data")
    table = pd.DataFrame(cols)
    table.insert(0, "label", pd.Series(labels).reindex(table.index).astype(int))
    return table


def fit_from_folder(
    weights: str | os.PathLike,
    manifest: str | os.PathLike | list[str | os.PathLike],
    data: str | os.PathLike | None = None,
    *,
    split: str | None = None,
    threshold: str = "eer",
    target_fpr: float | None = None,
    margin: float = DEFAULT_MARGIN,
    device: str = "cpu",
    batch_size: int = 16,
    progress: bool = True,
    how: str = "mean",
) -> tuple[Panel, "object"]:
    """Fit the panel on the validation videos of `manifest` (one or several, e.g. FF++ and DFDC so
    that AV sees videos with audio); returns it (not yet saved) and the per-video table.

    The panel records what detection must do alike: `aggregate` (= `how`, each specialist's video
    logit from its samples) and `frames_per_video` of the cache (see `cache_frames_per_video`)."""
    check_how(how)
    from dfpanel.extract.cache import FaceTrackCache
    from dfpanel.models.specialists.base import find_specialist
    from dfpanel.weights.folder import check_cache_spec, find_weights

    files = find_weights(weights, "torch")
    from dfpanel.index.manifest import read_manifest

    manifests = [Path(m) for m in (manifest if isinstance(manifest, (list, tuple)) else [manifest])]
    for m in manifests:
        if not m.is_file():
            raise DataError(f"{m}: manifest not found; write one with `dfpanel index`")
    records = [r for m in manifests for r in read_manifest(m)]
    if not records:
        raise DataError(f"{', '.join(map(str, manifests))}: no videos listed; give the validation manifest from `dfpanel index`")
    if data is None:
        data = next((f.sidecar.get("config", {}).get("data", {}).get("cache") for f in files
                     if isinstance(f.sidecar.get("config"), dict) and f.sidecar["config"].get("data", {}).get("cache")), None)
        if data is None:
            raise DataError(f"{weights}: no --data CACHE given and the weights' sidecars do not name one; pass --data")
    cache = FaceTrackCache(data)
    check_cache_spec(data, [(f.path, f.sidecar) for f in files])  # before any model loads
    cache_rows = cache.rows()
    has_audio = {(r.dataset, r.id): bool(r.has_audio) for r in cache_rows}
    scores, needs_audio = {}, set()
    for f in files:
        model = _load_specialist(f.path, device)
        if getattr(model, "needs_audio", getattr(find_specialist(f.specialist), "needs_audio", False)):
            needs_audio.add(f.specialist)
        scores[f.specialist] = _predict_scores(model, data, manifest=records, split=split, batch_size=batch_size,
                                               device=device, progress=progress)
    table = video_logit_table(scores, has_audio, needs_audio, how)
    names = [c for c in table.columns if c != "label"]
    fitted = set(table.index)
    fitted_rows = [r for r in cache_rows if (r.dataset, r.id) in fitted]
    panel = fit_panel(table[names].to_numpy(dtype=np.float64), table["label"].to_numpy(), names,
                      threshold=threshold, target_fpr=target_fpr, margin=margin, aggregate=how,
                      frames_per_video=cache_frames_per_video(data, fitted_rows))
    panel.weights_ids = {f.specialist: f.sidecar.get("sha256") or "" for f in files}
    panel.metrics["manifests"] = [str(m.resolve()) for m in manifests]
    panel.metrics["specialist_auc"], notes = _specialist_auc(table, names)
    if notes:
        panel.metrics["notes"] = notes
    return panel, table


def cache_frames_per_video(cache_root: str | os.PathLike, rows) -> int | None:
    """Frames per video the cache was extracted with: `frames` of its recorded InputSpec
    (CACHE/input_spec.json), else (a cache from before specs were recorded) the most frames any of
    `rows` (the videos fitted on) holds, which `--frames` reproduces (clips of the same length, as many).
    Reads no per-video metadata."""
    from dfpanel.extract.cache import has_cache_spec, read_cache_spec

    if has_cache_spec(cache_root):
        return int(read_cache_spec(cache_root).frames)
    held = [int(r.n_frames) for r in rows if r.n_frames > 0]
    return max(held) if held else None


def _specialist_auc(table, names: list[str]) -> tuple[dict[str, float | None], list[str]]:
    """Each specialist's own video-level AUC on the videos it voted on (`auroc`: undefined with one
    class only, written null, with a note), and the notes."""
    out, notes = {}, []
    for n in names:
        voted = table[n].notna()
        auc = auroc(table.loc[voted, n].to_numpy(), table.loc[voted, "label"].to_numpy())
        out[n] = None if np.isnan(auc) else auc
        if out[n] is None:
            notes.append(f"{n.upper()}: the videos it voted on hold one class only; its AUC is undefined (null)")
    return out, notes


# Indirections so tests can stand in for the trained models.
def _load_specialist(path: Path, device: str):
    from dfpanel.weights.io import load_specialist

    return load_specialist(path, device=device)


def _predict_scores(model, data, **kwargs):
    from dfpanel.inference.scores import predict_scores

    return predict_scores(model, data, **kwargs)

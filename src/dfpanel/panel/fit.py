"""`dfpanel panel fit`: score validation videos with every specialist in a weights folder, aggregate
per video exactly as detection does, mask what detection would abstain on (AV without audio), and
fit the combiner."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from dfpanel.errors import DataError
from dfpanel.panel.combiner import DEFAULT_MARGIN, Panel, fit_panel, video_logit


def video_logit_table(scores: Mapping[str, "object"], has_audio: Mapping[tuple[str, str], bool] | None = None,
                      needs_audio: set[str] | None = None, how: str = "mean"):
    """scores: specialist -> per-sample DataFrame (predict_scores columns). Returns a DataFrame indexed
    by (dataset, video_id) with `label` and one video-level logit column per specialist, NaN where
    that specialist has no samples or would abstain. `needs_audio` None: the registered specialists
    whose class says they need audio."""
    import pandas as pd

    if needs_audio is None:
        from dfpanel.models.specialists.base import find_specialist

        needs_audio = {n for n in scores if getattr(find_specialist(n), "needs_audio", False)}

    cols, labels = {}, {}
    for name, df in scores.items():
        if df.empty:
            continue
        g = df.groupby(["dataset", "video_id"], sort=True)
        z = g["logit"].apply(lambda s: video_logit(s.to_numpy(), how))
        if name in needs_audio and has_audio is not None:
            silent = [k for k in z.index if not has_audio.get(k, True)]
            z.loc[silent] = np.nan
        cols[name] = z
        labels.update(g["label"].first().to_dict())
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
) -> tuple[Panel, "object"]:
    """Fit the panel on the validation videos of `manifest` (one or several, e.g. FF++ and DFDC so
    that AV sees videos with audio); returns it (not yet saved) and the per-video table."""
    from dfpanel.extract.cache import FaceTrackCache
    from dfpanel.models.specialists.base import find_specialist
    from dfpanel.weights.folder import find_weights

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
    has_audio = {(r.dataset, r.id): bool(r.has_audio) for r in cache.rows()}
    scores, needs_audio = {}, set()
    for f in files:
        model = _load_specialist(f.path, device)
        if getattr(model, "needs_audio", getattr(find_specialist(f.specialist), "needs_audio", False)):
            needs_audio.add(f.specialist)
        scores[f.specialist] = _predict_scores(model, data, manifest=records, split=split, batch_size=batch_size,
                                               device=device, progress=progress)
    table = video_logit_table(scores, has_audio, needs_audio)
    names = [c for c in table.columns if c != "label"]
    panel = fit_panel(table[names].to_numpy(dtype=np.float64), table["label"].to_numpy(), names,
                      threshold=threshold, target_fpr=target_fpr, margin=margin)
    panel.weights_ids = {f.specialist: f.sidecar.get("sha256") or "" for f in files}
    panel.metrics["manifests"] = [str(m.resolve()) for m in manifests]
    panel.metrics["specialist_auc"] = _specialist_auc(table, names)
    return panel, table


def _specialist_auc(table, names: list[str]) -> dict[str, float | None]:
    """Each specialist's own video-level AUC on the videos it voted on (None: one class only)."""
    from sklearn.metrics import roc_auc_score

    out = {}
    for n in names:
        voted = table[n].notna()
        y = table.loc[voted, "label"].to_numpy()
        out[n] = float(roc_auc_score(y, table.loc[voted, n].to_numpy())) if len(set(y)) == 2 else None
    return out


# Indirections so tests can stand in for the trained models.
def _load_specialist(path: Path, device: str):
    from dfpanel.weights.io import load_specialist

    return load_specialist(path, device=device)


def _predict_scores(model, data, **kwargs):
    from dfpanel.inference.scores import predict_scores

    return predict_scores(model, data, **kwargs)

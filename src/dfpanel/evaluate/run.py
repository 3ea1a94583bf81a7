"""Evaluation: sample scores -> metrics at frame and video level, overall, per dataset, per fake type;
and the whole `dfpanel eval` run (weights x test manifests -> metrics.json, scores.csv, roc.png).

Per fake type, the fakes of that type are scored against the reals of the datasets where that type
occurs (the field's convention, e.g. FF++ "NeuralTextures vs real"): AUC needs both classes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from dfpanel.errors import DataError, WeightsError
from dfpanel.evaluate.metrics import binary_metrics
from dfpanel.inference.aggregate import (
    GATE_COLUMN,
    aggregate_videos,
    check_samples,
    evidence_rows,
)
from dfpanel.weights.sidecar import read_sidecar as _read_sidecar
from dfpanel.weights.sidecar import training_summary

METRICS_VERSION = 1


def _metrics(df: pd.DataFrame, threshold: float) -> dict:
    return binary_metrics(df["prob"].to_numpy(dtype=np.float64), df["label"].to_numpy(), threshold=threshold)


def evaluate_level(df: pd.DataFrame, threshold: float = 0.5) -> dict:
    """{"overall": m, "by_dataset": {ds: m}, "by_fake_type": {type: m}} over one table of scored rows."""
    out = {"overall": _metrics(df, threshold), "by_dataset": {}, "by_fake_type": {}}
    for ds, g in df.groupby("dataset", sort=True):
        out["by_dataset"][str(ds)] = _metrics(g, threshold)
    if "fake_type" in df.columns:
        fakes = df[df["label"] == 1]
        for ft, g in fakes.groupby("fake_type", sort=True):
            reals = df[(df["label"] == 0) & df["dataset"].isin(g["dataset"].unique())]
            out["by_fake_type"][str(ft)] = _metrics(pd.concat([reals, g]), threshold)
    return out


ABSTAINED_NOTE = "every sample was gated (e.g. AV: no speech in any clip): the specialist abstains on this set"


def abstained_level() -> dict:
    """The metrics of a level with no scored sample: counts 0, every metric NaN, and the reason."""
    empty = {"n": 0, "n_real": 0, "n_fake": 0, "notes": [ABSTAINED_NOTE]}
    return {"overall": empty, "by_dataset": {}, "by_fake_type": {}}


def evaluate_scores(samples_df: pd.DataFrame, threshold: float = 0.5, how: str = "mean") -> dict:
    """Metrics of one scores table: {"frame": evaluate_level(samples), "video": evaluate_level(videos)}.

    "frame" is the sample level (one frame, or one clip for the clip specialists AV and TM); "video"
    aggregates each video's samples with `how` (see aggregate_videos). Gated samples (the scores'
    `gate` column, e.g. AV's silent clips) hold no evidence: they are left out of both levels, and a
    video whose samples are all gated is one the specialist abstains on; "gated" (when the table has
    a gate column) counts both.
    """
    check_samples(samples_df)
    samples = evidence_rows(samples_df)
    videos = aggregate_videos(samples_df, how=how)
    voted = videos[videos["prob"].notna()]
    if samples.empty:  # the specialist abstains on the whole set (AV on silent videos): say so, score nothing
        out = {"frame": abstained_level(), "video": abstained_level()}
    else:
        out = {"frame": evaluate_level(samples, threshold), "video": evaluate_level(voted, threshold)}
    if GATE_COLUMN in samples_df.columns:  # scores from predict_scores: say what the gates left out
        out["gated"] = {"samples": int(len(samples_df) - len(samples)), "abstained_videos": int(len(videos) - len(voted))}
    return out


# --- the `dfpanel eval` run ------------------------------------------------------------------------


def resolve_weights(weights: Path) -> Path:
    """The .safetensors file meant by `weights` (the suffix may be left out, as load_weights allows)."""
    p = Path(weights)
    if not p.is_file() and p.with_name(p.name + ".safetensors").is_file():
        p = p.with_name(p.name + ".safetensors")
    if not p.is_file():
        raise WeightsError(f"{p.name}: weights file not found; give the .safetensors written by `dfpanel train`")
    return p


def read_sidecar(weights: Path) -> dict:
    """The JSON sidecar next to a weights file (plain JSON: safe to read before loading anything)."""
    return _read_sidecar(resolve_weights(weights))


def weights_info(weights: Path, sidecar: dict) -> dict:
    sha = sidecar.get("sha256") or ""
    return {
        "path": str(weights),
        "id": sidecar.get("id") or (sha[:12] if sha else Path(weights).stem),
        "sha256": sha,
        "specialist": sidecar.get("specialist", ""),
        "stage": sidecar.get("stage", ""),
        **training_summary(sidecar),  # what the weights learned from: metrics on synthetic-only weights say so
    }


def run_labels(infos: Sequence[dict]) -> list[str]:
    """Specialist name per weights file, made unique with its stage (then its id) when repeated."""
    labels = [i["specialist"] or i["id"] for i in infos]
    if len(set(labels)) < len(labels):
        labels = [f"{i['specialist']}:{i['stage']}" if i["stage"] else f"{i['specialist']}:{i['id']}" for i in infos]
    if len(set(labels)) < len(labels):
        labels = [f"{i['specialist']}:{i['id']}" for i in infos]
    return labels


class EvalSet(NamedTuple):
    name: str
    manifest: Path
    ids: set[str]  # video ids of the split
    datasets: set[str]


def read_test_sets(manifests: Sequence[Path], split: str | None) -> list[EvalSet]:
    """One EvalSet per manifest, named by its dataset(s), or by its file stem when that would be
    ambiguous. Reading them all first finds a bad manifest before any model loads."""
    from dfpanel.index.manifest import read_manifest

    sets = []
    for m in manifests:
        rows = read_manifest(m, split=split)
        datasets = {r.dataset for r in rows}
        sets.append(EvalSet("+".join(sorted(datasets)) or Path(m).stem, Path(m), {r.id for r in rows}, datasets))
    for rename in (lambda t: t.manifest.stem, lambda t: str(t.manifest)):
        if len({t.name for t in sets}) < len(sets):
            sets = [t._replace(name=rename(t)) for t in sets]
    return sets


def evaluate_weights(
    weights: Sequence[Path],
    manifests: Sequence[Path],
    cache_root: Path,
    *,
    split: str | None = "test",
    threshold: float = 0.5,
    how: str = "mean",
    batch_size: int = 16,
    device: str = "cpu",
    progress: bool = True,
) -> tuple[dict, pd.DataFrame]:
    """Score every test manifest with every weights file; returns (results, scores).

    results = {"version", "threshold", "aggregate", "split", "runs": [{"weights": info, "test_sets":
    [{"name", "manifest", "n_videos", "frame": ..., "video": ...}]}]}; scores = all sample rows with
    `specialist`, `run` (the weights' label) and `test_set` columns added.
    """
    from dfpanel import __version__
    from dfpanel.inference.scores import predict_scores
    from dfpanel.weights.folder import check_cache_spec
    from dfpanel.weights.io import load_specialist

    test_sets = read_test_sets(manifests, split)
    results = {
        "version": __version__,
        "metrics_version": METRICS_VERSION,
        "threshold": float(threshold),
        "aggregate": how,
        "split": split,
        "runs": [],
    }
    weights = list(dict.fromkeys(resolve_weights(w) for w in weights))  # the same file twice is one run
    sidecars = [read_sidecar(w) for w in weights]
    check_cache_spec(cache_root, zip(weights, sidecars))  # before any model loads: views they never saw
    infos = [weights_info(w, side) for w, side in zip(weights, sidecars)]
    for info, label in zip(infos, run_labels(infos)):
        info["label"] = label
    tables = []
    for w, info in zip(weights, infos):
        model = load_specialist(w, device=device)
        info["specialist"] = info["specialist"] or getattr(model, "name", "")
        run = {"weights": info, "test_sets": []}
        for ts in test_sets:
            df = predict_scores(
                model, cache_root, manifest=ts.manifest, split=split, batch_size=batch_size, device=device,
                progress=progress,
            )
            # predict_scores selects by id; a same-named video of another dataset is not this set's.
            df = df[df["dataset"].isin(ts.datasets)] if df is not None else None
            if df is None or len(df) == 0:
                raise DataError(
                    f"{ts.manifest.name}: no cached samples of split {split!r} under {cache_root}; "
                    "run `dfpanel extract` on this manifest first, or choose another --split"
                )
            metrics = evaluate_scores(df, threshold=threshold, how=how)
            # Videos extraction skipped (no face, unreadable) are not scored; say how many, as the
            # field's numbers differ by how such videos are counted.
            missing = sorted(ts.ids - set(df["video_id"]))
            run["test_sets"].append(
                {"name": ts.name, "manifest": str(ts.manifest), "n_videos": int(df["video_id"].nunique()),
                 "n_manifest": len(ts.ids), "missing_videos": missing, **metrics}  # fmt: skip
            )
            tables.append(df.assign(specialist=info["specialist"], run=info["label"], test_set=ts.name))
        results["runs"].append(run)
    return results, pd.concat(tables, ignore_index=True)


def json_safe(obj, digits: int = 6):
    """NaN/inf -> None (JSON has no NaN), numpy scalars -> Python, floats rounded (torchmetrics computes
    in float32, so further digits are noise)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v, digits) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return round(obj, digits) if math.isfinite(obj) else None
    return obj


def write_outputs(results: dict, scores: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """metrics.json, scores.csv (sample level), video_scores.csv and roc.png (video level) in out_dir."""
    from dfpanel.evaluate.plots import plot_roc
    from dfpanel.inference.aggregate import aggregate_videos

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "metrics": out_dir / "metrics.json",
        "scores": out_dir / "scores.csv",
        "video_scores": out_dir / "video_scores.csv",
        "roc": out_dir / "roc.png",
    }
    paths["metrics"].write_text(json.dumps(json_safe(results), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    scores.to_csv(paths["scores"], index=False)

    curves, videos = [], []
    several = len(results["runs"]) > 1
    for (run, name), g in scores.groupby(["run", "test_set"], sort=False):
        v = aggregate_videos(g, how=results["aggregate"]).assign(run=run, test_set=name)
        videos.append(v)
        label = f"{run} / {name}" if several else str(name)
        voted = v[v["prob"].notna()]  # videos the specialist abstained on (all samples gated) have no score
        curves.append((label, voted["prob"].to_numpy(), voted["label"].to_numpy()))
    pd.concat(videos, ignore_index=True).to_csv(paths["video_scores"], index=False)
    plot_roc(curves, paths["roc"], title="Video-level ROC")
    return paths

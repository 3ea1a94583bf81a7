"""The JSON sidecar next to every weights file, and the one function that reads it.

    NAME.safetensors -> NAME.json        written by `dfpanel.weights.io.save_weights` (training)
    NAME.onnx        -> NAME.onnx.json   written by `dfpanel export`

Every reader (weights folders, load_weights, eval, fetch, ONNX runner) goes through `read_sidecar`, so a
missing, unreadable or malformed sidecar gives the same one-line `WeightsError` everywhere.

Provenance: what the weights learned from. Training writes, in the sidecar's `provenance`::

    {"format": 1,
     "datasets": [                       # one entry per training run and dataset, oldest first;
       {"name": "ffpp",                  # inherited from the init_from parent, then this run's own
        "stage": "ffpp", "chunk": null,
        "manifest_hash": "<sha256>",      # of the stage's manifest, or of the (dataset, id, label,
                                          # split) rows used when it was given a cache only
        "splits": {"train": 12, "val": 4}, "videos": 16,
        "synthetic": true,                # true: every video was made by `dfpanel synth`; false: some
                                          # were not; null: the cache does not say (extracted before
                                          # dfpanel recorded it)
        "synthetic_videos": 16}],
     "complete": true,                    # false when a parent in the chain recorded no provenance
     "synthetic_only": true}              # complete, and every dataset in the chain is synthetic

`training_data()` reduces that to "synthetic" (learned only from synthetic data: reports say the verdict
is a demonstration), "real" (some dataset in the chain is not synthetic) or "unknown" (no provenance, as
in weights made before dfpanel recorded it or by a third party, or a chain with gaps): unknown is never
shown as synthetic or as real.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from dfpanel.errors import WeightsError

PROVENANCE_FORMAT = 1
TRAINING_DATA = ("synthetic", "real", "unknown")


def sidecar_path(weights: str | os.PathLike) -> Path:
    """`x.safetensors` (or `x`) -> `x.json`; `x.onnx` -> `x.onnx.json`."""
    p = Path(weights)
    if p.suffix == ".onnx":
        return p.with_name(p.name + ".json")
    if p.suffix != ".safetensors":
        p = p.with_name(p.name + ".safetensors")
    return p.with_suffix(".json")


def read_sidecar(
    weights: str | os.PathLike,
    *,
    missing_ok: bool = False,
    need: Sequence[str] = (),
    label: str | None = None,
) -> dict:
    """The validated sidecar of a weights file (.safetensors or .onnx); {} when it is missing and
    `missing_ok`. `need` names keys that must be present (e.g. "specialist"); `label` names the file in
    messages instead of its path (e.g. the URL it came from). Raises WeightsError, one line."""
    side = sidecar_path(weights)
    where = label or str(side)
    try:
        text = side.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing_ok:
            return {}
        raise WeightsError(f"{weights}: no sidecar {side.name} next to it; keep the .json that was saved with the "
                           "weights (copy it from the training run)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{where}: unreadable weights sidecar ({exc}); copy it again from the training run") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{where}: weights sidecar is not valid JSON ({exc.msg} at line {exc.lineno}); "
                           "copy it again from the training run or re-save the weights") from None
    if not isinstance(data, dict):
        raise WeightsError(f"{where}: weights sidecar must be a JSON object, got {type(data).__name__}; "
                           "copy it again from the training run")
    problem = _problem(data, need)
    if problem:
        raise WeightsError(f"{where}: {problem}; copy the sidecar again from the training run")
    if isinstance(data.get("specialist"), str):
        data["specialist"] = data["specialist"].lower()
    return data


def _problem(data: dict, need: Sequence[str]) -> str | None:
    missing = [k for k in need if not data.get(k)]
    if missing:
        what = "which specialist it holds" if missing[0] == "specialist" else f"its {missing[0]!r}"
        return f"sidecar does not say {what}"
    if "specialist" in data and not (isinstance(data["specialist"], str) and data["specialist"]):
        return f"sidecar's specialist must be a name, got {data['specialist']!r}"
    for key in ("sha256", "onnx_sha256", "parent_sha256"):
        if data.get(key) is not None and not isinstance(data[key], str):
            return f"sidecar's {key} must be a string of hex digits"
    if "model_config" in data and not isinstance(data["model_config"], dict):
        return "sidecar's model_config must be a mapping"
    if data.get("provenance") is not None:
        return _provenance_problem(data["provenance"])
    return None


def _provenance_problem(prov) -> str | None:
    if not isinstance(prov, dict):
        return "provenance must be a mapping"
    datasets = prov.get("datasets")
    if not isinstance(datasets, list):
        return "provenance has no list of datasets"
    for i, d in enumerate(datasets):
        if not isinstance(d, dict) or not isinstance(d.get("name"), str) or not d["name"]:
            return f"provenance.datasets[{i}] has no name"
        if d.get("synthetic") not in (True, False, None):
            return f"provenance.datasets[{i}].synthetic must be true, false or null"
        if not isinstance(d.get("videos", 0), int) or isinstance(d.get("videos"), bool):
            return f"provenance.datasets[{i}].videos must be a number of videos"
    for key in ("complete", "synthetic_only"):
        if key in prov and not isinstance(prov[key], bool):
            return f"provenance.{key} must be true or false"
    return None


# ------------------------------------------------------------------------------------- provenance


def dataset_entries(rows: Iterable, *, stage: str, chunk: int | None, manifest_hash: str | None = None) -> list[dict]:
    """Provenance entries (one per dataset) for the cache rows one training run used. Rows need
    `dataset`, `id`, `label`, `split` and `synthetic` (None = unknown)."""
    import hashlib

    by_ds: dict[str, list] = {}
    for r in rows:
        by_ds.setdefault(r.dataset, []).append(r)
    out = []
    for name in sorted(by_ds):
        rs = by_ds[name]
        splits: dict[str, int] = {}
        for r in rs:
            splits[r.split] = splits.get(r.split, 0) + 1
        flags = [getattr(r, "synthetic", None) for r in rs]
        synthetic = False if False in flags else (None if None in flags else True)
        if manifest_hash is None:
            h = hashlib.sha256()
            for r in sorted(rs, key=lambda r: r.id):
                h.update(json.dumps([r.dataset, r.id, r.label, r.split]).encode())
            digest = h.hexdigest()
        else:
            digest = manifest_hash
        out.append({
            "name": name, "stage": stage, "chunk": chunk, "manifest_hash": digest, "splits": splits,
            "videos": len({r.id for r in rs}), "synthetic": synthetic,
            "synthetic_videos": len({r.id for r in rs if getattr(r, "synthetic", None) is True}),
        })
    return out


def chain_provenance(parent: dict | None, entries: list[dict], *, has_parent: bool) -> dict:
    """This run's provenance: the parent's chain (when it started from weights) + its own entries.
    A parent whose sidecar records no provenance leaves the chain incomplete."""
    inherited = (parent or {}).get("provenance") if has_parent else None
    datasets = [dict(d) for d in (inherited or {}).get("datasets", [])] + [dict(e) for e in entries]
    complete = (not has_parent) or (inherited is not None and bool(inherited.get("complete", True)))
    return {
        "format": PROVENANCE_FORMAT,
        "datasets": datasets,
        "complete": complete,
        "synthetic_only": bool(complete and datasets and all(d.get("synthetic") is True for d in datasets)),
    }


def training_data(sidecar: dict | None) -> str:
    """"synthetic", "real" or "unknown" for a (validated) sidecar; see the module docstring."""
    prov = (sidecar or {}).get("provenance")
    if not isinstance(prov, dict) or not prov.get("datasets"):
        return "unknown"
    flags = [d.get("synthetic") for d in prov["datasets"]]
    if False in flags:
        return "real"
    if all(f is True for f in flags) and prov.get("complete", True):
        return "synthetic"
    return "unknown"


def training_summary(sidecar: dict | None) -> dict:
    """{"training_data": synthetic|real|unknown, "datasets": [names, first seen first]} for reports."""
    prov = (sidecar or {}).get("provenance")
    names = [d["name"] for d in prov["datasets"]] if isinstance(prov, dict) and prov.get("datasets") else []
    return {"training_data": training_data(sidecar), "datasets": list(dict.fromkeys(names))}

"""Install published weights from a URL into a weights folder, checked against their sha256.

The sidecar is copied as published, so its provenance (what the weights learned from) travels with it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from dfpanel.errors import WeightsError
from dfpanel.weights.fetch import download
from dfpanel.weights.io import load_weights
from dfpanel.weights.sidecar import read_sidecar, sidecar_path


def fetch_weights(url: str, *, sha256: str, out: str | Path, sidecar_url: str | None = None, progress: bool = True) -> Path:
    """Download `url` (and its sidecar) once, refuse a sha256 mismatch, copy both into OUT named after
    the specialist the sidecar declares. Returns the installed .safetensors path."""
    weights = download(url, sha256=sha256, progress=progress)
    side_url = sidecar_url or (url.rsplit(".", 1)[0] + ".json" if url.endswith(".safetensors") else url + ".json")
    side_src = download(side_url, progress=progress)
    cached_side = sidecar_path(weights)
    if side_src != cached_side:
        shutil.copy2(side_src, cached_side)
    # Checked here so an error names the URL (check --sidecar-url); load_weights reads it again below.
    if not read_sidecar(weights, label=side_url).get("specialist"):
        raise WeightsError(f"{side_url}: sidecar names no specialist; these are not dfpanel weights")
    # load_weights checks the file is real safetensors, matches the sidecar's specialist and sha256.
    _, sidecar = load_weights(weights, expected_sha256=sha256)
    name = sidecar["specialist"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{name}.safetensors"
    shutil.copy2(weights, target)
    shutil.copy2(cached_side, sidecar_path(target))
    return target

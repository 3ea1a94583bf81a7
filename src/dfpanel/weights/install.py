"""Install published weights from a URL into a weights folder, checked against their sha256."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from dfpanel.errors import WeightsError
from dfpanel.weights.fetch import download
from dfpanel.weights.io import load_weights, sidecar_path


def fetch_weights(url: str, *, sha256: str, out: str | Path, sidecar_url: str | None = None, progress: bool = True) -> Path:
    """Download `url` (and its sidecar) once, refuse a sha256 mismatch, copy both into OUT named after
    the specialist the sidecar declares. Returns the installed .safetensors path."""
    weights = download(url, sha256=sha256, progress=progress)
    side_url = sidecar_url or (url.rsplit(".", 1)[0] + ".json" if url.endswith(".safetensors") else url + ".json")
    side_src = download(side_url, progress=progress)
    cached_side = sidecar_path(weights)
    if side_src != cached_side:
        shutil.copy2(side_src, cached_side)
    try:  # checked here so the error names the URL; load_weights reads it again below
        json.loads(cached_side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{side_url}: sidecar is not JSON ({exc}); check --sidecar-url") from None
    # load_weights checks the file is real safetensors, matches the sidecar's specialist and sha256.
    _, sidecar = load_weights(weights, expected_sha256=sha256)
    name = str(sidecar.get("specialist") or "")
    if not name:
        raise WeightsError(f"{side_url}: sidecar names no specialist; these are not dfpanel weights")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{name}.safetensors"
    shutil.copy2(weights, target)
    shutil.copy2(cached_side, sidecar_path(target))
    return target

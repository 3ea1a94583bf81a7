"""Install published weights from a URL into a weights folder, checked against their sha256.

The sidecar is copied as published, so its provenance (what the weights learned from) travels with it.
The installed file's name is a registered specialist's name, taken from the registry once the sidecar
and the weights file's own header agree on it: never a path built from downloaded text.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from dfpanel.errors import WeightsError
from dfpanel.models.specialists.base import find_specialist, list_specialists
from dfpanel.weights.fetch import download
from dfpanel.weights.io import load_weights
from dfpanel.weights.sidecar import read_sidecar, sidecar_path


def check_out_folder(out: str | Path) -> Path:
    """OUT must be a folder (or not exist yet); one-line WeightsError otherwise."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise WeightsError(f"{out}: --out is a file, not a weights folder; give a folder (created if missing)")
    return out


def fetch_weights(url: str, *, sha256: str, out: str | Path, sidecar_url: str | None = None, progress: bool = True) -> Path:
    """Download `url` (and its sidecar) once, refuse a sha256 mismatch, copy both into OUT named after
    the (registered) specialist the sidecar and the weights' header both declare. Returns the
    installed .safetensors path."""
    out = check_out_folder(out)
    weights = download(url, sha256=sha256, progress=progress)
    side_url = sidecar_url or (url.rsplit(".", 1)[0] + ".json" if url.endswith(".safetensors") else url + ".json")
    side_src = download(side_url, progress=progress)
    cached_side = sidecar_path(weights)
    if side_src != cached_side:
        shutil.copy2(side_src, cached_side)
    # Checked here so an error names the URL (check --sidecar-url); load_weights reads it again below.
    declared = read_sidecar(weights, label=side_url).get("specialist")
    if not declared:
        raise WeightsError(f"{side_url}: sidecar names no specialist; these are not dfpanel weights")
    cls = find_specialist(declared)
    if cls is None:
        raise WeightsError(f"{side_url}: sidecar names specialist {declared!r}, not one of {', '.join(list_specialists())}; "
                           "these are not dfpanel weights (check the URL and --sidecar-url)")
    header = _header_specialist(weights, url)
    if header != cls.name:
        raise WeightsError(f"{side_url}: sidecar names specialist {declared!r} but the weights at {url} hold "
                           f"{header!r} (their header); check --sidecar-url, or fetch the matching pair")
    # load_weights checks the file is real safetensors, matches the sidecar's specialist and sha256.
    load_weights(weights, expected_specialist=cls.name, expected_sha256=sha256)
    target = out / f"{cls.name}.safetensors"  # cls.name comes from the registry, not from the download
    try:
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy2(weights, target)
        shutil.copy2(cached_side, sidecar_path(target))
    except OSError as exc:
        raise WeightsError(f"{out}: cannot install the weights there ({exc.strerror or exc}); "
                           "give a writable folder with --out") from None
    return target


def _header_specialist(weights: Path, url: str) -> str | None:
    """The specialist the safetensors header names (save_weights writes it), lower case; None if none."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), framework="pt", device="cpu") as fh:
            meta = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{url}: not a safetensors weights file ({str(exc).splitlines()[0]}); "
                           "dfpanel only loads .safetensors") from None
    name = meta.get("specialist")
    return str(name).lower() if name else None

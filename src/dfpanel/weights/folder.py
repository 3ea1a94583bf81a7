"""A weights folder: one specialist per `<stem>.safetensors` + `<stem>.json` sidecar (torch), or per
`<stem>.onnx` + `<stem>.onnx.json` (written by `dfpanel export`), plus an optional panel.json.

The specialist a file holds is read from its sidecar, not its name, so `cm_ffpp_best.safetensors`
works. Two files for the same specialist are refused (which one would vote is ambiguous).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from dfpanel.errors import ConfigError, WeightsError
from dfpanel.extract.spec import LEGACY_SPEC, InputSpec
from dfpanel.models.specialists.base import (
    find_specialist,
    list_specialists,
    specialist_order,
)
from dfpanel.weights.sidecar import read_sidecar, sidecar_path, training_summary

log = logging.getLogger(__name__)

ONNX_SIDECAR_SUFFIX = ".onnx.json"
PANEL_FILE = "panel.json"  # the combiner fitted on this folder's specialists (dfpanel.panel)


@dataclass
class WeightFile:
    specialist: str
    path: Path  # .safetensors or .onnx
    sidecar: dict

    @property
    def info(self) -> dict:
        s = self.sidecar
        return {
            "file": self.path.name,
            "sha256": s.get("sha256"),
            "stage": s.get("stage"),
            "version": s.get("version"),
            **training_summary(s),  # training_data (synthetic / real / unknown) and the datasets' names
        }

    @property
    def input_spec(self) -> InputSpec:
        return sidecar_input_spec(self.sidecar, self.path)


_warned_legacy: set[str] = set()


def sidecar_input_spec(sidecar: dict, path: str | os.PathLike) -> InputSpec:
    """The InputSpec the weights at `path` were trained with (sidecar key `input_spec`, copied from the
    training cache). Weights made before specs were recorded have none: they read as the default
    spec, with a warning once per file. WeightsError (one line) for a damaged spec."""
    d = sidecar.get("input_spec")
    if d is None:
        key = str(Path(path).resolve())
        if key not in _warned_legacy:
            _warned_legacy.add(key)
            log.warning("%s: sidecar has no input_spec (weights from before input specs were recorded); "
                        "assuming the default extraction settings", Path(path).name)
        return LEGACY_SPEC
    try:
        return InputSpec.from_dict(d, source=f"{Path(path).name} sidecar input_spec")
    except ConfigError as exc:
        raise WeightsError(str(exc)) from None


def find_weights(folder: str | os.PathLike, backend: str = "torch") -> list[WeightFile]:
    """The weight files of one backend in a folder, in the BG, AV, CM, RR, TM order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise WeightsError.folder_not_found(folder)
    ext = {"torch": ".safetensors", "onnx": ".onnx"}.get(backend)
    if ext is None:
        raise WeightsError(f"unknown backend {backend!r}; choose torch or onnx")
    found: dict[str, WeightFile] = {}
    for path in sorted(folder.glob(f"*{ext}")):
        side = read_sidecar(path, need=("specialist",))
        if find_specialist(side["specialist"]) is None:
            raise WeightsError(f"{sidecar_path(path)}: names specialist {side['specialist']!r}, which is not one of "
                               f"{', '.join(list_specialists())}; copy the sidecar that was saved with {path.name}")
        wf = WeightFile(specialist=side["specialist"], path=path, sidecar=side)
        if wf.specialist in found:
            raise WeightsError(
                f"{folder}: two weight files for {wf.specialist.upper()} ({found[wf.specialist].path.name}, {path.name}); keep one"
            )
        found[wf.specialist] = wf
    if not found:
        hint = "run `dfpanel export --weights DIR --out DIR` first" if backend == "onnx" else "train with `dfpanel train`"
        raise WeightsError(f"{folder}: no {ext} weights found; {hint}")
    return [found[k] for k in sorted(found, key=specialist_order)]


def check_cache_spec(cache_root: str | os.PathLike, weights_and_sidecars) -> None:
    """ConfigError (one line) when the cache at `cache_root` was extracted with other pixel/audio-
    shaping settings than the training cache of any of the weights (pairs of path and sidecar):
    scoring it would measure views they never saw. Frames per video may differ."""
    from dfpanel.extract.cache import read_cache_spec
    from dfpanel.extract.spec import check_same_views

    have = read_cache_spec(cache_root)
    for path, sidecar in weights_and_sidecars:
        want = sidecar_input_spec(sidecar, path)
        check_same_views(
            have, want, have_name=f"cache {cache_root}", want_name=f"the training cache of {Path(path).name}",
            fix=f"re-extract the videos into a new cache: dfpanel extract MANIFEST --out NEW {want.extract_args()}",
        )

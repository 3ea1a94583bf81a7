"""A weights folder: one specialist per `<stem>.safetensors` + `<stem>.json` sidecar (torch), or per
`<stem>.onnx` + `<stem>.onnx.json` (written by `dfpanel export`), plus an optional panel.json.

The specialist a file holds is read from its sidecar, not its name, so `cm_ffpp_best.safetensors`
works. Two files for the same specialist are refused (which one would vote is ambiguous).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dfpanel.errors import WeightsError
from dfpanel.models.specialists.base import specialist_order
from dfpanel.weights.sidecar import read_sidecar, training_summary

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


def find_weights(folder: str | os.PathLike, backend: str = "torch") -> list[WeightFile]:
    """The weight files of one backend in a folder, in the BG, AV, CM, RR, TM order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise WeightsError(f"{folder}: weights folder not found; pass --weights DIR holding <specialist>.safetensors + .json files")
    ext = {"torch": ".safetensors", "onnx": ".onnx"}.get(backend)
    if ext is None:
        raise WeightsError(f"unknown backend {backend!r}; choose torch or onnx")
    found: dict[str, WeightFile] = {}
    for path in sorted(folder.glob(f"*{ext}")):
        side = read_sidecar(path, need=("specialist",))
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

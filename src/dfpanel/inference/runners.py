"""A specialist ready to score a face track: its view plus a forward pass in torch or onnxruntime.

Both runners use the specialist's own `view` (the same function training used), so the two backends
differ only in who computes the logits.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class SpecialistRunner:
    name: str
    title: str
    sample_kind: str  # "frame" | "clip"
    clip_len: int
    needs_audio: bool  # abstains on videos without audio (AV)
    weights_id: str | None  # sha256 of the weights, from the sidecar
    weights_info: dict = field(default_factory=dict)  # file, stage, sha256... for the report

    def view(self, entry, positions: Sequence[int]) -> dict:  # pragma: no cover - interface
        raise NotImplementedError

    def predict(self, batch: dict) -> np.ndarray:  # pragma: no cover - interface
        """(B,) logits for a batched view dict (torch tensors)."""
        raise NotImplementedError


def collate(views: list[dict]) -> dict:
    import torch

    return {k: torch.stack([v[k] for v in views]) for k in views[0]}


def _meta(spec) -> dict:
    cfg = getattr(spec, "config", {}) or {}
    return {
        "name": spec.name,
        "title": spec.title or spec.name.upper(),
        "sample_kind": spec.sample_kind,
        "clip_len": int(cfg.get("clip_len", 8)),
        "needs_audio": bool(getattr(spec, "needs_audio", False)),  # Specialist.needs_audio (AV: True)
    }


class TorchRunner(SpecialistRunner):
    def __init__(self, spec, device: str = "cpu", weights_id: str | None = None, weights_info: dict | None = None):
        super().__init__(**_meta(spec), weights_id=weights_id, weights_info=weights_info or {})
        self.spec = spec.to(device).eval()
        self.device = device

    def view(self, entry, positions):
        return self.spec.view(entry, positions)

    def predict(self, batch):
        import torch

        with torch.inference_mode():
            out = self.spec({k: v.to(self.device) for k, v in batch.items()})
        return out.logit.detach().float().cpu().numpy().reshape(-1)


class OnnxRunner(SpecialistRunner):
    """`view_spec` is a specialist built from the sidecar's config (weights unused) for its view."""

    def __init__(self, view_spec, onnx_model, weights_id: str | None = None, weights_info: dict | None = None):
        super().__init__(**_meta(view_spec), weights_id=weights_id, weights_info=weights_info or {})
        self.spec = view_spec.eval()
        self.onnx = onnx_model  # callable: dict[str, np.ndarray] -> logits

    def view(self, entry, positions):
        return self.spec.view(entry, positions)

    def predict(self, batch):
        out = self.onnx({k: v.detach().cpu().numpy() for k, v in batch.items()})
        if isinstance(out, dict):  # OnnxSpecialist: {"logit": ..., "aux_logit": ...}
            out = out["logit"]
        elif isinstance(out, (list, tuple)):
            out = out[0]
        return np.asarray(out, dtype=np.float32).reshape(-1)


def load_runners(folder: str | os.PathLike, backend: str = "torch", device: str = "cpu", only: list[str] | None = None):
    """Runners for every specialist in the folder (or those named in `only`)."""
    from dfpanel.errors import WeightsError
    from dfpanel.weights.folder import find_weights

    files = find_weights(folder, backend)
    if only:
        wanted = {s.lower() for s in only}
        missing = wanted - {f.specialist for f in files}
        if missing:
            raise WeightsError(f"{folder}: no weights for {', '.join(sorted(missing))}; drop them from --only or add their files")
        files = [f for f in files if f.specialist in wanted]
    runners = []
    for wf in files:
        if backend == "torch":
            from dfpanel.weights.io import load_specialist

            spec = load_specialist(wf.path, device=device)
            runners.append(TorchRunner(spec, device=device, weights_id=wf.sidecar.get("sha256"), weights_info=wf.info))
        else:
            from dfpanel.models.specialists.base import create_specialist
            from dfpanel.weights.export import OnnxSpecialist

            cfg = dict(wf.sidecar.get("model_config") or {})
            cfg.update(pretrained=False, pretrained_path=None)  # the view needs the config, never downloaded weights
            view_spec = create_specialist(wf.specialist, **cfg)
            runners.append(OnnxRunner(view_spec, OnnxSpecialist(wf.path), weights_id=wf.sidecar.get("sha256"), weights_info=wf.info))
    return runners

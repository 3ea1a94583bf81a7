"""A specialist ready to score a face track: its view plus a forward pass in torch or onnxruntime.

Both runners use the specialist's own `view` (the same function training used), so the two backends
differ only in who computes the logits; likewise its own `gate` (why a sample holds no evidence; a
pure function of entry, positions and config, so the ONNX runner builds it from the sidecar's config).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from dfpanel.extract.spec import DEFAULT_SPEC, InputSpec


@dataclass
class SpecialistRunner:
    name: str
    title: str
    sample_kind: str  # "frame" | "clip"
    clip_len: int
    needs_audio: bool  # abstains on videos without audio (AV)
    weights_id: str | None  # sha256 of the weights, from the sidecar
    weights_info: dict = field(default_factory=dict)  # file, stage, sha256... for the report
    input_spec: InputSpec = DEFAULT_SPEC  # how its training cache was extracted: detection extracts the same way
    # (entry, positions) -> why that sample holds no evidence, or None; None: nothing is gated
    gate: Callable | None = None
    color: str | None = None  # its colour in reports (the specialist class's `color`)

    def view(self, entry, positions: Sequence[int]) -> dict:  # pragma: no cover - interface
        raise NotImplementedError

    def predict(self, batch: dict) -> np.ndarray:  # pragma: no cover - interface
        """(B,) logits for a batched view dict (torch tensors)."""
        raise NotImplementedError


def _meta(spec, config: dict | None = None) -> dict:
    """Runner facts from a specialist (a built model, or its class with `config`)."""
    cfg = (getattr(spec, "config", None) if config is None else config) or {}
    if not isinstance(cfg, dict):  # a class's `config` is a property object
        cfg = {}
    return {
        "name": spec.name,
        "title": spec.title or spec.name.upper(),
        "sample_kind": spec.sample_kind,
        "clip_len": int(cfg.get("clip_len", 8)),
        "needs_audio": bool(getattr(spec, "needs_audio", False)),  # Specialist.needs_audio (AV: True)
        "color": getattr(spec, "color", None) or None,
    }


class TorchRunner(SpecialistRunner):
    def __init__(self, spec, device: str = "cpu", weights_id: str | None = None, weights_info: dict | None = None,
                 input_spec: InputSpec | None = None):
        from dfpanel.inference.batches import torch_predict

        super().__init__(**_meta(spec), weights_id=weights_id, weights_info=weights_info or {},
                         input_spec=input_spec or DEFAULT_SPEC)
        self.spec = spec.to(device).eval()
        self.device = device
        self.gate = spec.gate_fn() if hasattr(spec, "gate_fn") else None
        self._predict = torch_predict(self.spec, device)

    def view(self, entry, positions):
        return self.spec.view(entry, positions)

    def predict(self, batch):
        return self._predict(batch)


class OnnxRunner(SpecialistRunner):
    """An exported specialist: its view (`view_fn`, from the sidecar's config, no model built) and an
    onnxruntime session for the logits."""

    def __init__(self, spec_class, config: dict, view_fn, onnx_model, weights_id: str | None = None,
                 weights_info: dict | None = None, input_spec: InputSpec | None = None, gate_fn=None):
        super().__init__(**_meta(spec_class, config), weights_id=weights_id, weights_info=weights_info or {},
                         input_spec=input_spec or DEFAULT_SPEC, gate=gate_fn)
        self.view_fn = view_fn
        self.onnx = onnx_model  # callable: dict[str, np.ndarray] -> logits

    @classmethod
    def from_config(cls, name: str, config: dict, onnx_model, **kwargs) -> "OnnxRunner":
        """The runner of specialist `name` exported with `config` (the sidecar's model_config)."""
        from dfpanel.models.specialists.base import specialist_class, specialist_view

        spec_class = specialist_class(name)
        full = spec_class.full_config(**config)
        gate = spec_class.gate_for(**config) if hasattr(spec_class, "gate_for") else None
        return cls(spec_class, full, specialist_view(name, **config), onnx_model, gate_fn=gate, **kwargs)

    def view(self, entry, positions):
        return self.view_fn(entry, positions)

    def predict(self, batch):
        out = self.onnx({k: v.detach().cpu().numpy() for k, v in batch.items()})
        if isinstance(out, dict):  # OnnxSpecialist: {"logit": ..., "aux_logit": ...}
            out = out["logit"]
        elif isinstance(out, (list, tuple)):
            out = out[0]
        return np.asarray(out, dtype=np.float32).reshape(-1)


def load_runners(folder: str | os.PathLike, backend: str = "torch", device: str = "cpu", only: list[str] | None = None):
    """Runners for every specialist in the folder (or those named in `only`). ONNX runners build no
    model: the view comes from the specialist's class and the sidecar's config."""
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
            runners.append(TorchRunner(spec, device=device, weights_id=wf.sidecar.get("sha256"), weights_info=wf.info,
                                       input_spec=wf.input_spec))
        else:
            from dfpanel.weights.export import OnnxSpecialist

            cfg = dict(wf.sidecar.get("model_config") or {})
            runners.append(OnnxRunner.from_config(wf.specialist, cfg, OnnxSpecialist(wf.path),
                                                  weights_id=wf.sidecar.get("sha256"), weights_info=wf.info,
                                                  input_spec=wf.input_spec))
    return runners

"""ONNX export of a specialist (dynamic batch) and an onnxruntime runner with the same inputs.

    export_onnx(model, "cm.onnx")      -> cm.onnx + cm.onnx.json (specialist, model_config, inputs)
    OnnxSpecialist("cm.onnx")(inputs)  -> {"logit": (B,), "aux_logit": (B,)} as numpy

Inputs are the specialist's input dict (batched, as from `model.view` + collate); ONNX input names are
the dict keys, in `model.input_names()` order.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dfpanel.errors import DataError, WeightsError
from dfpanel.weights.sidecar import read_sidecar

OUTPUT_NAMES = ("logit", "aux_logit")
OPSET = 17
TOLERANCE = 1e-4


class _FlatInputs(nn.Module):
    """ONNX wants positional tensors in and a tuple out; a specialist takes a dict and returns a dataclass."""

    def __init__(self, model: nn.Module, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(dict(zip(self.names, tensors)))
        return out.logit, out.aux_logit


def onnx_sidecar_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_name(p.name + ".json")


def export_onnx(model, path: str | os.PathLike, batch: int = 2, verify: bool = True) -> Path:
    """Export `model` (eval mode, CPU) to ONNX with a dynamic batch axis; with `verify`, check that
    onnxruntime matches PyTorch within 1e-4 on a different batch size and raise if it does not."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    device, training = next(model.parameters()).device, model.training
    try:
        model.to("cpu").eval()
        return _export(model, out, batch, verify)
    finally:
        model.to(device).train(training)  # hand the caller's model back as it came


def _export(model, out: Path, batch: int, verify: bool) -> Path:
    import onnx

    names = model.input_names()
    example = model.example_inputs(batch)
    dynamic = {n: {0: "batch"} for n in [*names, *OUTPUT_NAMES]}
    # eval() the wrapper too: the exporter restores the wrapper's mode afterwards, and a wrapper left
    # in train mode would switch the specialist back to training (batch-stat BatchNorm, dropout).
    flat = _FlatInputs(model, names).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is chatty about tracing
        torch.onnx.export(
            flat,
            tuple(example[n] for n in names),
            str(out),
            dynamo=False,  # the TorchScript exporter needs no onnxscript and handles dynamic batch
            input_names=names,
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic,
            opset_version=OPSET,
            do_constant_folding=True,
        )
    onnx.checker.check_model(str(out))
    meta = {
        "specialist": model.name,
        "model_config": model.config,
        "inputs": {n: list(s) for n, s in model.input_shapes(model.config).items()},
        "outputs": list(OUTPUT_NAMES),
        "opset": OPSET,
    }
    if verify:
        meta["max_abs_diff"] = verify_onnx(model, out, batch + 1)
    onnx_sidecar_path(out).write_text(json.dumps(meta, indent=1, default=str))
    return out


def verify_onnx(model, path: str | os.PathLike, batch: int = 3) -> float:
    """Largest |PyTorch - onnxruntime| over both logits on random inputs; WeightsError above 1e-4."""
    inputs = model.example_inputs(batch, seed=1)
    with torch.no_grad():
        ref = model(inputs)
    got = OnnxSpecialist(path)(inputs)
    diff = max(
        float(np.abs(ref.logit.numpy() - got["logit"]).max()),
        float(np.abs(ref.aux_logit.numpy() - got["aux_logit"]).max()),
    )
    if not diff <= TOLERANCE:
        raise WeightsError(f"{Path(path).name}: ONNX output differs from PyTorch by {diff:.2e} (> {TOLERANCE}); report this as a bug")
    return diff


class OnnxSpecialist:
    """Runs an exported specialist with onnxruntime; call it with the same input dict as the model."""

    def __init__(self, path: str | os.PathLike, providers: list[str] | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise WeightsError(f"{self.path}: ONNX model not found; run `dfpanel export` first")
        try:
            self.session = ort.InferenceSession(str(self.path), providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise WeightsError(f"{self.path.name}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.meta = read_sidecar(self.path, missing_ok=True)
        self.name = self.meta.get("specialist", "")

    def __call__(self, inputs: dict) -> dict[str, np.ndarray]:
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise DataError(f"{self.path.name}: inputs lack {', '.join(missing)}; give the dict the specialist's view() makes")
        feed = {}
        for n in self.input_names:
            v = inputs[n]
            v = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
            feed[n] = np.ascontiguousarray(v, dtype=np.float32)
        return dict(zip(self.output_names, self.session.run(None, feed)))


def export_folder(weights: Path, out: Path, only: list[str] | None = None, verify: bool = True) -> list[Path]:
    """`<stem>.onnx` + `<stem>.onnx.json` per specialist (the sidecar keeps the source weights' sha256,
    stage, input_spec and provenance, so reports name the same weights ids and what they learned
    from, and detection extracts the same way) and panel.json."""
    import json
    import shutil

    from dfpanel.hashing import file_sha256
    from dfpanel.weights.folder import PANEL_FILE, find_weights
    from dfpanel.weights.io import load_specialist

    files = find_weights(weights, "torch")
    if only:
        files = [f for f in files if f.specialist in {s.lower() for s in only}]
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for f in files:
        model = load_specialist(f.path, device="cpu")
        dest = export_onnx(model, out / f"{f.path.stem}.onnx", verify=verify)
        side = onnx_sidecar_path(dest)
        meta = read_sidecar(dest)
        meta.update(sha256=f.sidecar.get("sha256"), stage=f.sidecar.get("stage"), source=f.path.name,
                    onnx_sha256=file_sha256(dest))
        if f.sidecar.get("input_spec") is not None:  # detection extracts as the training cache did
            meta["input_spec"] = f.input_spec.to_dict()
        if f.sidecar.get("provenance") is not None:
            meta["provenance"] = f.sidecar["provenance"]
        side.write_text(json.dumps(meta, indent=1, default=str))
        written.append(dest)
    panel = Path(weights) / PANEL_FILE
    if panel.is_file() and out.resolve() != Path(weights).resolve():
        shutil.copyfile(panel, out / PANEL_FILE)  # the panel votes on the same specialists, in either backend
    return written

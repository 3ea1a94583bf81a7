"""Specialist weights on disk: safetensors + a JSON sidecar. Never unpickles anything.

    NAME.safetensors   the state dict; its header metadata names the specialist
    NAME.json          sidecar: specialist, model_config, version, sha256 of the .safetensors file, plus
                       whatever the caller adds (stage, config, manifest_hash, parent_sha256, metrics,
                       provenance); read only through `dfpanel.weights.sidecar.read_sidecar`
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from dfpanel.errors import ConfigError, WeightsError
from dfpanel.hashing import file_sha256  # noqa: F401  (re-exported: part of this module's API)
from dfpanel.weights.sidecar import read_sidecar, sidecar_path  # noqa: F401  (sidecar_path re-exported)

SUFFIX = ".safetensors"


def _weights_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p if p.suffix == SUFFIX else p.with_name(p.name + SUFFIX)


def save_weights(model, path: str | os.PathLike, sidecar: dict | None = None) -> Path:
    """Write model's state dict to path (.safetensors added if missing) and its sidecar; returns the
    .safetensors path. Both are written to temp names and renamed, so a crash leaves no half file."""
    from safetensors.torch import save_file

    from dfpanel import __version__

    out = _weights_path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    tmp = out.with_name(out.name + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "specialist": model.name, "dfpanel": __version__})
    os.replace(tmp, out)
    meta = dict(sidecar or {})
    meta.update(specialist=model.name, model_config=model.config, version=__version__, sha256=file_sha256(out))
    side = sidecar_path(out)
    tmp_side = side.with_name(side.name + ".tmp")
    tmp_side.write_text(json.dumps(meta, indent=1, default=str))
    os.replace(tmp_side, side)
    return out


def load_weights(
    path: str | os.PathLike, expected_specialist: str | None = None, expected_sha256: str | None = None
) -> tuple[dict[str, torch.Tensor], dict]:
    """-> (state_dict, sidecar). Raises WeightsError (one line naming the file) when the file is missing,
    is not safetensors, does not match its sha256, or was made for another specialist."""
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    if not p.is_file() and _weights_path(p).is_file():
        p = _weights_path(p)
    if not p.is_file():
        raise WeightsError(f"{p}: weights file not found; check the path or train the specialist first")
    actual = file_sha256(p)
    if expected_sha256 and actual != expected_sha256.lower():
        raise WeightsError(f"{p.name}: sha256 {actual[:12]}... does not match the expected {expected_sha256[:12]}...; the file is corrupt or not the one asked for")
    try:
        with safe_open(str(p), framework="pt", device="cpu") as fh:
            header = fh.metadata() or {}
            state = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{p.name}: not a safetensors weights file ({str(exc).splitlines()[0]}); dfpanel only loads .safetensors") from None
    sidecar = read_sidecar(p, missing_ok=True)  # the header still names the specialist without one
    if sidecar.get("sha256") and sidecar["sha256"] != actual:
        raise WeightsError(f"{p.name}: contents do not match the sha256 in {sidecar_path(p).name}; the file was changed or truncated")
    in_header = str(header.get("specialist") or "").lower() or None
    in_sidecar = sidecar.get("specialist")
    if in_header and in_sidecar and in_header != in_sidecar:
        raise WeightsError(f"{sidecar_path(p)}: sidecar says specialist {in_sidecar!r} but {p.name} holds {in_header!r} "
                           "weights (its header); copy the sidecar that was saved with these weights")
    made_for = in_sidecar or in_header
    if expected_specialist and made_for and made_for != expected_specialist.lower():
        where = f"{p} (sidecar {sidecar_path(p).name})" if in_sidecar else str(p)
        raise WeightsError(f"{where}: weights were made for specialist {made_for!r}, not {expected_specialist.lower()!r}; pass the {expected_specialist.lower()} weights")
    if made_for and "specialist" not in sidecar:
        sidecar["specialist"] = made_for
    return state, sidecar


def load_into(model, state: dict[str, torch.Tensor], source: str = "weights") -> None:
    """Strict load with a one-line WeightsError instead of PyTorch's multi-line report."""
    mine = model.state_dict()
    missing = [k for k in mine if k not in state]
    unexpected = [k for k in state if k not in mine]
    wrong = [k for k in mine if k in state and tuple(state[k].shape) != tuple(mine[k].shape)]
    if missing or unexpected or wrong:
        what = (
            f"{len(missing)} missing (e.g. {missing[0]})" if missing else
            f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else
            f"{len(wrong)} of another shape (e.g. {wrong[0]})"
        )
        raise WeightsError(f"{source}: weights do not fit this {model.name} model ({what}); build the model with the sidecar's model_config")
    model.load_state_dict(state, strict=True)


def load_specialist(path: str | os.PathLike, device: str | torch.device = "cpu", expected_sha256: str | None = None, **overrides):
    """Rebuild the specialist from the sidecar's model_config (+ overrides), load its weights, eval()."""
    from dfpanel.models.specialists.base import create_specialist
    from dfpanel.models.svd_residual import skip_svd

    expected = overrides.pop("expected_specialist", None)
    state, sidecar = load_weights(path, expected_specialist=expected, expected_sha256=expected_sha256)
    name = sidecar.get("specialist")
    if not name or "model_config" not in sidecar:
        raise WeightsError(f"{Path(path).name}: no sidecar with specialist and model_config next to it; keep the .json that was saved with the weights")
    # The trained weights replace any pretrained backbone, so never fetch one here.
    cfg = {**sidecar["model_config"], **overrides, "pretrained": False, "pretrained_path": None}
    try:
        with skip_svd():  # the saved weights hold the split tensors: no need to split random ones first
            model = create_specialist(name, **cfg)
    except ConfigError as exc:  # an unknown specialist, or options it does not take: the sidecar is at fault
        raise WeightsError(f"{sidecar_path(Path(path))}: {exc}; copy the sidecar that was saved with these weights") from None
    load_into(model, state, source=Path(path).name)
    return model.to(device).eval()

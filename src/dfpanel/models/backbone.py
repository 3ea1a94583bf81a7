"""The timm backbone every specialist shares by design: EfficientNet-B4 by default, any timm CNN by name.

`Backbone(images in [0, 1])` -> (B, C, 7, 7) feature map (C = 1792 for B4). It normalises with the
backbone's own pretrained mean/std, so views stay backbone-agnostic. `backbone="tiny"` is timm's
`test_efficientnet` (~0.1 M parameters) for CPU tests and the demo. CNNs are the design; timm
transformers (ViT, Swin) work too: their tokens are laid back out as a map before pooling.

`tuning` says what of the backbone trains (the specialist's module, fusion and heads always train):
  - "full": everything;
  - "layernorm": only the LayerNorm weights and biases (GenD-style light tuning of a ViT);
  - "svd_residual": every nn.Linear of the transformer blocks becomes an `SVDResidualLinear` holding
    its principal subspace frozen; only the `svd_residual_rank` smallest singular components train
    (Effort-style; see models/svd_residual.py). The split happens after pretrained weights load.
Both light modes need a transformer backbone. `backbone_args` are extra timm.create_model kwargs
(e.g. depth / embed_dim for a tiny random ViT in tests).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from dfpanel.errors import ConfigError, WeightsError
from dfpanel.models.svd_residual import split_linears, svd_regularization

TINY_BACKBONE = "test_efficientnet"
GRID = 7  # every map (backbone and specialist) is pooled to GRID x GRID tokens
TUNINGS = ("full", "layernorm", "svd_residual")
RESERVED_ARGS = ("num_classes", "global_pool", "pretrained", "pretrained_cfg_overlay", "img_size")


def pool_matrix(n_in: int, n_out: int, like: torch.Tensor) -> torch.Tensor:
    """(n_out, n_in) averaging matrix equal to adaptive average pooling along one axis."""
    i = torch.arange(n_out, device=like.device)
    k = torch.arange(n_in, device=like.device)
    start = (i * n_in) // n_out
    end = ((i + 1) * n_in + n_out - 1) // n_out
    inside = (k[None, :] >= start[:, None]) & (k[None, :] < end[:, None])
    return inside.to(like.dtype) / (end - start)[:, None].to(like.dtype)


class GridPool(nn.Module):
    """Adaptive average pooling to GRID x GRID written as two matrix products.

    Same numbers as nn.AdaptiveAvgPool2d, but exports to ONNX for any input size (the ONNX exporter
    only handles adaptive pooling whose output divides its input) and has no data-dependent branches."""

    def __init__(self, size: int = GRID):
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        return pool_matrix(h, self.size, x) @ x @ pool_matrix(w, self.size, x).T


def timm_name(backbone: str) -> str:
    return TINY_BACKBONE if backbone == "tiny" else backbone


class Backbone(nn.Module):
    def __init__(
        self,
        name: str = "efficientnet_b4",
        pretrained: bool = False,
        pretrained_path: str | None = None,
        grid: int = GRID,
        image_size: int | None = None,
        tuning: str = "full",
        backbone_args: dict | None = None,
        svd_residual_rank: int = 1,
    ):
        super().__init__()
        import timm

        check_tuning(tuning, backbone_args, svd_residual_rank)
        kwargs: dict = {**(backbone_args or {}), "num_classes": 0, "global_pool": ""}
        if pretrained_path:
            path = Path(pretrained_path).expanduser()
            if not path.is_file():
                raise WeightsError(f"{path}: backbone weights file not found; fix pretrained_path or drop it")
            # timm loads .safetensors with safetensors and anything else with torch.load(weights_only=True).
            kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(path)})
        else:
            kwargs["pretrained"] = bool(pretrained)
        try:
            self.net = timm.create_model(timm_name(name), **kwargs)
            if image_size and _patch_size(self.net) is not None and _img_size(self.net) != image_size:
                # transformers fix their token grid at build time: rebuild for our input size
                self.net = timm.create_model(timm_name(name), img_size=image_size, **kwargs)
        except (TypeError, AssertionError) as exc:
            if not backbone_args:
                raise
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"backbone_args {backbone_args} do not fit timm model {timm_name(name)!r} ({detail}); fix or drop them") from None
        except RuntimeError as exc:
            if "Unknown model" in str(exc) or "Invalid model" in str(exc):
                raise ConfigError(f"unknown backbone {name!r}; use a timm model name (e.g. efficientnet_b4) or 'tiny'") from None
            raise WeightsError(f"{pretrained_path or name}: backbone weights do not fit {timm_name(name)} ({exc})".splitlines()[0]) from None
        self.tuning = tuning
        if tuning != "full":
            self._tune(name, tuning, svd_residual_rank)
        self.name = name
        self.channels = int(self.net.num_features)
        cfg = getattr(self.net, "pretrained_cfg", {}) or {}
        self.register_buffer("mean", torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1), persistent=False)
        self.pool = GridPool(grid)

        self.prefix_tokens = int(getattr(self.net, "num_prefix_tokens", 0) or 0)

    def _tune(self, name: str, tuning: str, rank: int) -> None:
        """Freeze the backbone except what `tuning` trains (after any pretrained weights loaded)."""
        norms = [m for m in self.net.modules() if isinstance(m, nn.LayerNorm)]  # timm's LayerNorms subclass it
        blocks = any(isinstance(m, nn.Linear) and "blocks" in n.split(".") for n, m in self.net.named_modules())
        if _patch_size(self.net) is None or not blocks or (tuning == "layernorm" and not norms):
            raise ConfigError(f"backbone {name!r} is not a transformer: tuning {tuning!r} needs a ViT (e.g. vit_base_patch16_clip_224); use a ViT or tuning full")
        self.net.requires_grad_(False)
        if tuning == "layernorm":
            for m in norms:
                m.requires_grad_(True)
        else:
            try:
                split_linears(self.net, rank)
            except ValueError as exc:
                raise ConfigError(f"backbone {name!r}: {exc}") from None

    def regularization_loss(self) -> torch.Tensor | None:
        """The SVD-residual orthogonality loss of this backbone (None unless tuning is svd_residual)."""
        return svd_regularization(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, channels, grid, grid)."""
        x = self.net.forward_features((images - self.mean) / self.std)
        # CNNs give (B, C, H, W); these branches depend on shapes only, never on values.
        if x.dim() == 3:  # ViT-style (B, prefix + H*W, C) tokens
            x = x[:, self.prefix_tokens :]
            side = math.isqrt(x.shape[1])
            x = x.transpose(1, 2).reshape(x.shape[0], self.channels, side, x.shape[1] // side)
        elif x.shape[1] != self.channels and x.shape[-1] == self.channels:  # channels-last maps (Swin)
            x = x.permute(0, 3, 1, 2)
        return self.pool(x)


def check_tuning(tuning, backbone_args, svd_residual_rank) -> None:
    """ConfigError (one line) for a tuning option of the wrong kind, before anything is built."""
    if tuning not in TUNINGS:
        raise ConfigError(f"unknown tuning {tuning!r}; use one of {', '.join(TUNINGS)}")
    if backbone_args is not None and (not isinstance(backbone_args, dict) or not all(isinstance(k, str) for k in backbone_args)):
        raise ConfigError(f"backbone_args must be a mapping of timm.create_model kwargs, got {backbone_args!r}")
    reserved = sorted(set(backbone_args or {}) & set(RESERVED_ARGS))
    if reserved:
        raise ConfigError(f"backbone_args may not set {', '.join(reserved)}: dfpanel sets them (use image_size / pretrained)")
    if isinstance(svd_residual_rank, bool) or not isinstance(svd_residual_rank, int) or svd_residual_rank < 1:
        raise ConfigError(f"svd_residual_rank must be an integer >= 1, got {svd_residual_rank!r}")


def _patch_size(net):
    pe = getattr(net, "patch_embed", None)
    return getattr(pe, "patch_size", None) if pe is not None else None


def _img_size(net):
    size = getattr(getattr(net, "patch_embed", None), "img_size", None)
    return size[0] if isinstance(size, (tuple, list)) else size

"""The one design all five specialists share: backbone + own module + attention fusion + heads.

A specialist file subclasses `PanelSpecialist` and supplies only its own ideas:
  - `build_view(entry, positions, cfg)`: its input tensors from a cache entry (static, so a
    DataLoader worker can take `model.view_fn()` without pickling the model);
  - `input_shapes(cfg)`: name -> unbatched shape of each input (ONNX export and tests use it);
  - `build_module(cfg)`: its specialist module, inputs dict -> (B, module_channels, 7, 7);
  - `extra_config`: its own constructor kwargs and their defaults (None = "same as image_size").
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from dfpanel.errors import ConfigError
from dfpanel.models.backbone import GRID, Backbone, GridPool, check_tuning
from dfpanel.models.fusion import AttentionFusion
from dfpanel.models.specialists.base import Specialist, SpecialistOutput

COMMON_DEFAULTS: dict = {
    "backbone": "efficientnet_b4",
    "pretrained": False,
    "pretrained_path": None,
    "image_size": 224,
    "clip_len": 8,
    "fusion_dim": 256,
    "fusion_heads": 8,
    "dropout": 0.2,
    # A 1x1 conv on the backbone's token grid predicting where a pseudo-fake's blend mask is (LAA-Net,
    # Forensics Adapter): trained with pseudofakes.mask_weight; only for specialists with a mask_input.
    "mask_head": False,
    "tuning": "full",  # what of the backbone trains: full | layernorm | svd_residual (models/backbone.py)
    "backbone_args": {},  # extra timm.create_model kwargs
    "svd_residual_rank": 1,  # trainable smallest singular components per linear (tuning svd_residual)
}


def conv_bn_act(in_ch: int, out_ch: int, kernel: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, padding=dilation * (kernel - 1) // 2, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.SiLU(inplace=True),
    )


def branch(in_ch: int, out_ch: int, kernel: int, stride: int = 1, downsample: int = 2, width: int = 16, dilation: int = 1) -> nn.Sequential:
    """One analyzer branch: its characteristic kxk conv, `downsample` 3x3 stride-2 convs, a 1x1
    projection to out_ch, and pooling to the 7x7 token grid."""
    layers = [conv_bn_act(in_ch, width, kernel, stride, dilation)]
    layers += [conv_bn_act(width, width, 3, 2) for _ in range(downsample)]
    layers += [nn.Conv2d(width, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch), GridPool(GRID)]
    return nn.Sequential(*layers)


class PanelSpecialist(Specialist):
    module_channels: ClassVar[int] = 32
    extra_config: ClassVar[dict] = {}

    def __init__(self, **kwargs):
        super().__init__()
        cfg = self.full_config(**kwargs)
        self._config = cfg
        self.check_config(cfg)
        self.backbone = Backbone(
            cfg["backbone"], cfg["pretrained"], cfg["pretrained_path"], image_size=cfg["image_size"],
            tuning=cfg["tuning"], backbone_args=cfg["backbone_args"], svd_residual_rank=cfg["svd_residual_rank"],
        )
        self.module = self.build_module(cfg)
        self.fusion = AttentionFusion(self.backbone.channels, self.module_channels, cfg["fusion_dim"], cfg["fusion_heads"], cfg["dropout"])
        self.mask_head = nn.Conv2d(self.backbone.channels, 1, 1) if cfg["mask_head"] else None

    @classmethod
    def full_config(cls, **kwargs) -> dict:
        """The constructor kwargs with every default filled in; unknown options are a ConfigError."""
        unknown = set(kwargs) - set(COMMON_DEFAULTS) - set(cls.extra_config)
        if unknown:
            known = ", ".join(sorted({**COMMON_DEFAULTS, **cls.extra_config}))
            raise ConfigError(f"specialist {cls.name!r}: unknown option(s) {', '.join(sorted(unknown))}; known: {known}")
        cfg = {**COMMON_DEFAULTS, **cls.extra_config, **kwargs}
        if cfg["backbone_args"] is None or isinstance(cfg["backbone_args"], dict):
            cfg["backbone_args"] = dict(cfg["backbone_args"] or {})  # a copy: never the shared default
        for key, value in cls.extra_config.items():
            if value is None and cfg[key] is None:
                cfg[key] = cfg["image_size"]
        return cfg

    @classmethod
    def view_for(cls, **kwargs):
        """The view of this specialist with config `kwargs`, without building it: `build_view` is
        static, so no backbone or module is made (ONNX detection needs the view only)."""
        return functools.partial(cls.build_view, cfg=cls.full_config(**kwargs))

    # ---- what a specialist file provides
    @staticmethod
    def build_view(entry, positions: Sequence[int], cfg: dict) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    @staticmethod
    def build_gate(entry, positions: Sequence[int], cfg: dict) -> str | None:
        """Why this sample holds no evidence for this specialist (e.g. AV: "no speech in the clip"), or
        None when it does. A gated sample is left out of training losses and of video scores; a video
        whose samples are all gated makes the specialist abstain with that reason. Default: never."""
        return None

    @classmethod
    def gate_for(cls, **kwargs):
        """The picklable `fn(entry, positions) -> reason | None` of this specialist with config `kwargs`."""
        return functools.partial(cls.build_gate, cfg=cls.full_config(**kwargs))

    def gate_fn(self):
        return type(self).gate_for(**self._config)

    @staticmethod
    def input_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:  # pragma: no cover
        raise NotImplementedError

    def build_module(self, cfg: dict) -> nn.Module:  # pragma: no cover
        raise NotImplementedError

    def check_config(self, cfg: dict) -> None:
        if cfg["mask_head"] and self.mask_input is None:
            raise ConfigError(f"specialist {self.name!r} has no mask input for a mask head; set mask_head: false")
        if cfg["image_size"] < 32:
            raise ConfigError(f"specialist {self.name!r}: image_size must be at least 32, got {cfg['image_size']}")
        check_tuning(cfg["tuning"], cfg["backbone_args"], cfg["svd_residual_rank"])

    def backbone_image(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return inputs["face"]

    def output_info(self, inputs: dict[str, torch.Tensor]) -> dict:
        return {}

    # ---- the shared interface
    @property
    def config(self) -> dict:
        """The kwargs that rebuild this model: `create_specialist(model.name, **model.config)`."""
        return dict(self._config)

    def view(self, entry, positions: Sequence[int]) -> dict[str, torch.Tensor]:
        return self.build_view(entry, positions, self._config)

    def view_fn(self):
        """A picklable `fn(entry, positions) -> inputs` for DataLoader workers."""
        return type(self).view_for(**self._config)

    def input_names(self) -> list[str]:
        return list(self.input_shapes(self._config))

    def example_inputs(self, batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
        """Random inputs of the right shapes (images in [0, 1], masks 1)."""
        g = torch.Generator().manual_seed(seed)
        out = {}
        for name, shape in self.input_shapes(self._config).items():
            out[name] = torch.ones(batch, *shape) if name.endswith("_mask") else torch.rand(batch, *shape, generator=g)
        return out

    def forward(self, inputs: dict[str, torch.Tensor]) -> SpecialistOutput:
        features = self.backbone(self.backbone_image(inputs))
        evidence = self.module(inputs)
        logit, aux_logit = self.fusion(features, evidence)
        mask_logit = self.mask_head(features) if self.mask_head is not None else None
        return SpecialistOutput(logit=logit, aux_logit=aux_logit, info=self.output_info(inputs), mask_logit=mask_logit)

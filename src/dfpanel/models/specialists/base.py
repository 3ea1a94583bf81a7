"""One interface for the five specialists, and the registry behind `create_specialist`.

A specialist is configuration of one design: backbone (timm) + its own module over its own view +
attention fusion + head. Each specialist file holds only its own ideas (its view and its module) and
registers itself with `@register_specialist`.

Contract used by training, evaluation, detection and export:
  - `SPEC.sample_kind` is "frame" (BG, CM, RR: one cached frame per sample) or "clip" (AV, TM: the
    positions of one clip of clip_len consecutive frames).
  - `view(entry, positions) -> dict[str, Tensor]` (unbatched, float32, CPU) turns a FaceTrackEntry and
    frame positions into the specialist's inputs; training and detection call the same function.
  - `forward(inputs: dict[str, Tensor]) -> SpecialistOutput` with batched inputs.
  - `input_names()` gives the order of the inputs for ONNX export.
  - `view_for(**cfg)` (classmethod) gives the view of a specialist with that config without building
    the model; `specialist_view(name, **cfg)` is its registry form (ONNX detection needs only views).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

_REGISTRY: dict[str, type["Specialist"]] = {}


@dataclass
class SpecialistOutput:
    logit: torch.Tensor  # (B,) real/fake logit from the fused class token; > 0 means fake
    aux_logit: torch.Tensor  # (B,) logit from the specialist tokens alone (auxiliary loss)
    info: dict = field(default_factory=dict)  # e.g. {"audio_used": (B,) bool} for AV
    mask_logit: torch.Tensor | None = None  # (B, 1, 7, 7) blend-mask logits (model.mask_head), else None


class Specialist(nn.Module):
    """Per-specialist facts live here, as class attributes, so reports, training and inference read them
    from the registry instead of keeping lists of names; a third-party specialist gets the defaults."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""  # human name for reports, e.g. "Compression history"
    sample_kind: ClassVar[str] = "frame"
    order: ClassVar[int] = 100  # place in reports and tables (DESIGN.md's table order for the built-ins)
    needs_audio: ClassVar[bool] = False  # abstains on a video without an audio track (AV)
    color: ClassVar[str | None] = None  # its colour in reports ("#rrggbb"); None: one from a spare palette
    # What its "fake" means, in plain words, completing "... suspects that {looks_for}".
    looks_for: ClassVar[str] = "signs of manipulation are present"
    # One-sided evidence (AV): its "fake" counts, its "real" does not (a lip-sync model finds nothing
    # wrong in a face swap that kept the original voice), so the panel never lets it pull towards real.
    one_sided: ClassVar[bool] = False
    # The pseudo-fake generators (dfpanel.pseudofakes) that make its trace, when a stage asks for them:
    # names, or {name: ..., option: value} tuned to the trace it reads (a stage's pseudofakes.generators wins).
    pseudofakes: ClassVar[tuple] = ()
    # The view input whose pixels a mask head predicts the blend mask on (None: no mask head possible).
    mask_input: ClassVar[str | None] = None

    @classmethod
    def augment_refusal(cls, transform: dict, flags: dict[str, bool]) -> str | None:
        """Why this specialist cannot train with the augmentation `transform` ({"name": albumentations
        class name, **its arguments}), given the stage's augment flags (e.g. {"allow_resample": False});
        None when it can. The default accepts every transform."""
        return None

    def view(self, entry, positions: Sequence[int]) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def view_for(cls, **cfg) -> "ViewFn":
        """The view of this specialist built with `cfg`. A specialist whose view is a method of the
        built model can only build it; `PanelSpecialist` (all built-ins) overrides this without."""
        return cls(**cfg).view

    @classmethod
    def full_config(cls, **cfg) -> dict:
        """`cfg` with this specialist's defaults filled in (what `model.config` would be)."""
        return dict(cfg)

    def input_names(self) -> list[str]:  # pragma: no cover
        raise NotImplementedError


def register_specialist(cls: type[Specialist]) -> type[Specialist]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a name")
    _REGISTRY[cls.name] = cls
    return cls


def list_specialists() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def specialist_class(name: str) -> type[Specialist]:
    _load_builtin()
    key = name.lower()
    if key not in _REGISTRY:
        from dfpanel.errors import ConfigError

        raise ConfigError(f"unknown specialist {name!r}; choose one of {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]


def find_specialist(name: str) -> type[Specialist] | None:
    """The registered class for `name`, or None (no error: callers fall back to the defaults)."""
    _load_builtin()
    return _REGISTRY.get(str(name).lower())


def specialist_order(name: str) -> tuple[int, str]:
    """Sort key for specialist names: registered ones by their `order`, unknown names last."""
    _load_builtin()
    cls = _REGISTRY.get(name.lower())
    return (cls.order if cls is not None else 1_000, name)


def create_specialist(name: str, **cfg) -> Specialist:
    """`create_specialist("cm", backbone="efficientnet_b4", pretrained=False)`."""
    return specialist_class(name)(**cfg)


def specialist_view(name: str, **cfg) -> "ViewFn":
    """The view `create_specialist(name, **cfg).view` would have, without building the model (no
    backbone, no weights): `fn(entry, positions) -> inputs`."""
    return specialist_class(name).view_for(**cfg)


def _load_builtin() -> None:
    # Importing the package registers the five built-in specialists.
    import dfpanel.models.specialists  # noqa: F401

ViewFn = Callable[[object, Sequence[int]], dict]

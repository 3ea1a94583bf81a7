"""One interface for pseudo-fake generators, and the registry behind `create_pseudofake`.

A pseudo-fake is a REAL sample given a fake's trace on the fly at training time (Self-Blended Images,
CVPR'22, and its video/audio kin): a specialist that learns to find the trace in its own reals cannot
learn a dataset's shortcuts (identity, scene, one generator's look), and can train from real videos alone.

A generator is called with one sample of a cache entry (its frame positions) and a numpy Generator, and
returns a `PseudoFake`: an `EditedEntry` (only the crops/audio it changed are replaced; the view reads
through it exactly as it reads a cache entry, so train and detection views stay one code path), the blend
mask per changed position (float32 HxW in [0, 1] in that crop's pixel frame: where pixels came from the
altered copy, the target of BG/RR's mask head) and `details` (what was drawn, for the preview dump).
Every random choice comes from the `rng` it is given, so a pseudo-fake is reproducible from its seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from dfpanel.errors import ConfigError
from dfpanel.extract.cache import EditedEntry, FaceTrackEntry

_REGISTRY: dict[str, type["PseudoFakeGenerator"]] = {}

# Another real entry to borrow from (AV's audio replacement): called with the rng, returns an entry
# or None when there is none to borrow.
DonorFn = Callable[[np.random.Generator], "FaceTrackEntry | None"]


@dataclass
class PseudoFake:
    entry: EditedEntry  # the sample's entry with the trace applied
    masks: dict[int, np.ndarray] | None = None  # position -> float32 HxW blend mask in crop pixels; None: no spatial mask
    details: dict = field(default_factory=dict)  # the draws, e.g. {"jpeg_quality": 31, "grid": [3, 5]}


class PseudoFakeGenerator:
    """Subclasses set `name`, `traces` (the synth manipulations the trace imitates, for docs and the
    benchmark), `params` (constructor options and defaults) and implement `make`."""

    name: ClassVar[str] = ""
    traces: ClassVar[tuple[str, ...]] = ()
    params: ClassVar[dict] = {}

    def __init__(self, **options):
        unknown = set(options) - set(self.params)
        if unknown:
            known = ", ".join(sorted(self.params)) or "none"
            raise ConfigError(f"pseudo-fake {self.name!r}: unknown option(s) {', '.join(sorted(unknown))}; known: {known}")
        self.options = {**self.params, **options}

    def applies(self, entry: FaceTrackEntry, positions: Sequence[int]) -> bool:
        """Whether this sample can carry the trace (AV: only clips with speech). Default: always."""
        return True

    def make(self, entry: FaceTrackEntry, positions: Sequence[int], rng: np.random.Generator,
             donor: DonorFn | None = None) -> PseudoFake:  # pragma: no cover
        raise NotImplementedError

    def __call__(self, entry: FaceTrackEntry, positions: Sequence[int], rng: np.random.Generator,
                 donor: DonorFn | None = None) -> PseudoFake:
        return self.make(entry, list(positions), rng, donor)


def register_pseudofake(cls: type[PseudoFakeGenerator]) -> type[PseudoFakeGenerator]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a name")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtin() -> None:
    import dfpanel.pseudofakes  # noqa: F401  (importing the package registers the built-ins)


def list_pseudofakes() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def pseudofake_class(name: str) -> type[PseudoFakeGenerator]:
    _load_builtin()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown pseudo-fake generator {name!r}; choose one of {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create_pseudofake(name: str, **options) -> PseudoFakeGenerator:
    """`create_pseudofake("self_blend", max_shift=0.03)`."""
    return pseudofake_class(name)(**options)

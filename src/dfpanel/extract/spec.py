"""InputSpec: every setting that shapes the pixels and audio a specialist receives.

`dfpanel extract` records it (CACHE/input_spec.json and each entry's meta.json); training copies the
cache's spec into each weights sidecar (key `input_spec`); `detect`, `serve`, `eval` and `panel fit`
extract with, or check against, the spec of the weights they load. So what a specialist sees at
training time and at detection time is equal by construction.

Two kinds of fields:
  - pixel/audio-shaping (`SHAPING_FIELDS`): a single view depends on them (which face, its box and
    landmarks, the crop, the clip it belongs to, the audio samples). Cache and weights must agree.
  - sampling density (`SAMPLING_FIELDS`: frames per video): how many views a video gives. It may
    differ between training and evaluation/detection without changing any single view's recipe.

Operational settings (device, decode threads, workers) are not part of it: they do not change what
comes out.

Compatibility: `from_dict` ignores keys it does not know (written by a newer dfpanel) and fills keys
it lacks with their defaults, so a field added later must default to the behaviour before it existed.
Bad values raise a one-line ConfigError naming where the spec came from.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields, replace

from dfpanel.errors import ConfigError

log = logging.getLogger(__name__)

SPEC_VERSION = 1
SPEC_FILE = "input_spec.json"  # cache-level record, CACHE/input_spec.json

TRACK_MODES = ("refine", "interpolate")
STORES = ("compact", "full")  # how a cache stores each frame (dfpanel.extract.compact)
FACE_MODES = ("main", "all")
AUDIO_NORMS = ("pcm16",)  # clip to [-1, 1) and quantise to the 16-bit grid k / 32768

SAMPLING_FIELDS = ("frames",)
MAX_FRAMES = 512  # frames per video: beyond this a video is decoded nearly whole (and views add little)


@dataclass(frozen=True)
class InputSpec:
    detector: str = "mtcnn"  # face detector (registry name)
    min_score: float = 0.9  # detections below this confidence are ignored
    min_face_size: int = 40  # smallest face searched for, source pixels
    max_side: int = 640  # frames larger than this are downscaled for detection
    track: str = "refine"  # "refine": detector's refine step frame to frame; "interpolate": every k-th frame
    detect_every: int = 4  # detector on every k-th frame of a clip (interpolate, and refine's fallback)
    frames: int = 32  # frames sampled per video (sampling density)
    clip_len: int = 8  # consecutive frames per clip (tracking and crop size are per clip)
    context_scale: float = 2.0  # stored crop side / face box side
    faces: str = "main"  # "main": the main track only; "all": every track (changes tracking of the main one)
    audio_rate: int = 16000  # audio resampled to this rate, mono
    audio_norm: str = "pcm16"  # how audio is normalised once, at extraction (see normalise_audio)
    # How each frame is stored (dfpanel.extract.compact). "compact": the context crop scaled so the face
    # box side is at most face_px, WebP at context_quality; beside it native_size x native_size native
    # pixels round the face on the 8x8 grid, lossless (what CM and RR read). "full": the whole context
    # crop at native resolution, lossless PNG (caches before compact storage; LEGACY_FILL below).
    store: str = "compact"
    face_px: int = 176  # face layer: the face box side at most this (a 224 px view of 1.3x the face: 172)
    face_span: float = 1.4  # face layer: this x the face box (covers the face_scale 1.3 views)
    context_px: int = 112  # context layer: the whole crop, the face at most this (BG's context view)
    native_size: int = 224
    context_quality: int = 85
    version: int = SPEC_VERSION

    # ---- checks ------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        self.check()

    def check(self, source: str = "input spec", fix: str = "") -> "InputSpec":
        """ConfigError (one line, naming `source`, ending with `fix`) on a bad value."""

        def bad(name: str, why: str):
            raise ConfigError(f"{source}: {name}={getattr(self, name)!r} {why}" + (f"; {fix}" if fix else ""))

        for name in ("min_face_size", "max_side", "detect_every", "frames", "clip_len", "audio_rate", "version",
                     "face_px", "context_px", "native_size", "context_quality"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                bad(name, "must be a whole number")
            if v < 1:
                bad(name, "must be at least 1")
        for name in ("min_score", "context_scale", "face_span"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                bad(name, "must be a number")
        if self.frames > MAX_FRAMES:
            bad("frames", f"must be at most {MAX_FRAMES} (frames sampled per video)")
        if self.clip_len > MAX_FRAMES:
            bad("clip_len", f"must be at most {MAX_FRAMES}")
        if not 0.0 <= self.min_score <= 1.0:
            bad("min_score", "must be between 0 and 1")
        if self.context_scale < 1.0:
            bad("context_scale", "must be at least 1 (the crop holds the whole face box)")
        if not isinstance(self.detector, str) or not self.detector:
            bad("detector", "must name a face detector")
        if self.track not in TRACK_MODES:
            bad("track", f"must be one of {', '.join(TRACK_MODES)}")
        if self.faces not in FACE_MODES:
            bad("faces", f"must be one of {', '.join(FACE_MODES)}")
        if self.store not in STORES:
            bad("store", f"must be one of {', '.join(STORES)}")
        if self.native_size % 8 or self.native_size < 64:
            bad("native_size", "must be a multiple of 8 and at least 64")
        if self.face_px < 32:
            bad("face_px", "must be at least 32")
        if self.context_px < 16:
            bad("context_px", "must be at least 16")
        if self.face_span < 1.0:
            bad("face_span", "must be at least 1 (the face layer holds the whole face box)")
        if self.context_quality > 100:
            bad("context_quality", "must be at most 100")
        if self.audio_norm not in AUDIO_NORMS:
            bad("audio_norm", f"must be one of {', '.join(AUDIO_NORMS)}")
        return self

    # ---- (de)serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "input spec") -> "InputSpec":
        """Tolerant of keys a newer dfpanel added (ignored) and of keys an older one lacked (defaults)."""
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: input spec must be a JSON object, got {type(d).__name__}; re-extract or restore the file")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            log.debug("%s: ignoring input spec keys from a newer dfpanel: %s", source, ", ".join(unknown))
        kwargs = {k: v for k, v in d.items() if k in known}
        if isinstance(kwargs.get("min_score"), int) and not isinstance(kwargs.get("min_score"), bool):
            kwargs["min_score"] = float(kwargs["min_score"])
        for key in ("context_scale", "face_span"):
            if isinstance(kwargs.get(key), int) and not isinstance(kwargs.get(key), bool):
                kwargs[key] = float(kwargs[key])
        # Built without __post_init__ so that a bad value is reported against `source`. A key the
        # writer's dfpanel did not know yet means the behaviour from before it existed (LEGACY_FILL).
        spec = object.__new__(cls)
        for k, v in {**asdict(DEFAULT_SPEC), **LEGACY_FILL, **kwargs}.items():
            object.__setattr__(spec, k, v)
        return spec.check(source, fix="the file is damaged or was edited by hand: restore it, or re-extract")

    def replace(self, **changes) -> "InputSpec":
        """A copy with `changes`; ConfigError for a field that does not exist or a bad value."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"unknown input setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return replace(self, **changes)

    # ---- comparing -----------------------------------------------------------------------------
    @property
    def all_faces(self) -> bool:
        return self.faces == "all"

    @classmethod
    def shaping_fields(cls) -> tuple[str, ...]:
        """Fields a single view depends on: cache and weights must agree on them."""
        return tuple(f.name for f in fields(cls) if f.name not in SAMPLING_FIELDS and f.name != "version")

    def shaping_key(self) -> tuple:
        """Hashable identity of what a view looks like (frames per video left out)."""
        return tuple(getattr(self, n) for n in self.shaping_fields())

    def differences(self, other: "InputSpec", *, sampling: bool = True) -> list[str]:
        """['min_face_size 40 vs 60', ...]: self's value first. `sampling=False` leaves out frames."""
        names = list(self.shaping_fields()) + (list(SAMPLING_FIELDS) if sampling else [])
        return [f"{n} {getattr(self, n)} vs {getattr(other, n)}" for n in names if getattr(self, n) != getattr(other, n)]

    def describe_difference(self, other: "InputSpec", *, sampling: bool = True) -> str:
        """One readable line: 'min_face_size 40 vs 60, track refine vs interpolate' ('' when equal)."""
        return ", ".join(self.differences(other, sampling=sampling))

    def same_views(self, other: "InputSpec") -> bool:
        """Do both give identical views of a frame (every shaping field equal)?"""
        return self.shaping_key() == other.shaping_key()

    def extract_args(self) -> str:
        """The `dfpanel extract` options that reproduce this spec."""
        args = [
            f"--frames {self.frames}", f"--clip-len {self.clip_len}", f"--detector {self.detector}",
            f"--min-face-size {self.min_face_size}", f"--min-score {self.min_score:g}", f"--max-side {self.max_side}",
            f"--track {self.track}", f"--detect-every {self.detect_every}", f"--context-scale {self.context_scale:g}",
        ]
        if self.all_faces:
            args.append("--all-faces")
        if self.store == "full":
            args.append("--store full")
        else:
            args.append(f"--store compact --face-px {self.face_px} --face-span {self.face_span:g} --context-px "
                        f"{self.context_px} --native-size {self.native_size} --context-quality {self.context_quality}")
        return " ".join(args)


DEFAULT_SPEC = InputSpec()
# What a spec written before a field existed means by its absence: caches and weights from before
# compact storage stored full lossless crops.
LEGACY_FILL = {"store": "full"}
# The spec of a cache or weights that record none (made before specs were recorded).
LEGACY_SPEC = InputSpec(**LEGACY_FILL)


def check_same_views(have: InputSpec, want: InputSpec, *, have_name: str, want_name: str, fix: str,
                     labels: tuple[str, str] = ("cache", "weights")) -> None:
    """ConfigError in one line when `have` and `want` would give different views (frames may differ):
    '<have_name> was made with other input settings than <want_name> (cache vs weights: min_face_size
    40 vs 60); <fix>'."""
    if have.same_views(want):
        return
    raise ConfigError(
        f"{have_name} was made with other input settings than {want_name} "
        f"({labels[0]} vs {labels[1]}: {have.describe_difference(want, sampling=False)}); {fix}"
    )

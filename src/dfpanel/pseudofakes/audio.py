"""`audio_desync`: a real clip whose voice no longer belongs to its mouth (AV).

With `replace_p` (and a donor: another real entry with speech), the track is replaced by the donor's
speech (its leading and trailing silence trimmed, looped or cut to the same length, loudness matched to
the original's speech). Otherwise the whole track is rolled circularly by a shift of `shift_s` seconds
(either sign), drawn until the clip's span still holds speech (up to `tries` draws; else the draw whose
clip holds the most speech). Same length and sample rate, on the 16-bit grid (`normalise_audio`); the
pixels are untouched, so there is no mask. Only clips with speech carry the trace (`applies`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dfpanel.extract.cache import EditedEntry, FaceTrackEntry, normalise_audio
from dfpanel.pseudofakes.base import (
    DonorFn,
    PseudoFake,
    PseudoFakeGenerator,
    register_pseudofake,
)
from dfpanel.pseudofakes.masks import _uniform
from dfpanel.views.speech import clip_span, clip_speech, entry_speech


def _speech_part(entry: FaceTrackEntry) -> np.ndarray | None:
    """The entry's audio from its first to its last speech frame; None without speech."""
    if entry.meta.audio is None or entry.audio is None or len(entry.audio) == 0:
        return None
    span = entry_speech(entry).span
    if span is None:
        return None
    sr = entry.meta.audio.sample_rate
    part = np.asarray(entry.audio[int(span[0] * sr) : int(np.ceil(span[1] * sr))], dtype=np.float32)
    return part if part.size else None


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2))) if x.size else 0.0


def _resample(x: np.ndarray, rate: int, to_rate: int) -> np.ndarray:
    if rate == to_rate:
        return x
    n = max(1, int(round(len(x) * to_rate / rate)))
    return np.interp(np.arange(n) * rate / to_rate, np.arange(len(x)), x).astype(np.float32)


@register_pseudofake
class AudioDesync(PseudoFakeGenerator):
    name = "audio_desync"
    traces = ("audio_shift", "audio_replace")
    sample_kind = "clip"
    params = {
        "replace_p": 0.3,  # chance to replace the voice by a donor's (when a donor is given)
        "shift_s": (0.2, 1.0),  # |shift| in seconds, drawn uniformly; the sign too
        "tries": 8,  # shift draws until the clip still holds speech
    }

    def applies(self, entry: FaceTrackEntry, positions: Sequence[int]) -> bool:
        return clip_speech(entry, positions)

    def make(self, entry: FaceTrackEntry, positions: Sequence[int], rng: np.random.Generator,
             donor: DonorFn | None = None) -> PseudoFake:
        if not self.applies(entry, positions):
            raise ValueError(f"audio_desync: the clip {list(positions)[:1]}... of {entry.meta.video_id!r} holds no speech")
        audio = np.asarray(entry.audio, dtype=np.float32)
        sr = entry.meta.audio.sample_rate
        if donor is not None and rng.random() < float(self.options["replace_p"]):
            other = donor(rng)
            voice = _speech_part(other) if other is not None else None
            if voice is not None:
                return self._replace(entry, audio, sr, other, voice, rng)
        return self._shift(entry, positions, audio, sr, rng)

    def _replace(self, entry, audio, sr, other, voice, rng) -> PseudoFake:
        voice = _resample(voice, other.meta.audio.sample_rate, sr)
        offset = int(rng.integers(0, len(voice)))
        reps = int(np.ceil((offset + len(audio)) / len(voice)))
        new = np.tile(voice, reps)[offset : offset + len(audio)]
        own = _speech_part(entry)
        target = _rms(own) if own is not None else _rms(audio)
        gain = target / max(_rms(new), 1e-8)
        new = normalise_audio(new * gain)
        details = {"mode": "replace", "donor": f"{other.meta.dataset}/{other.meta.video_id}",
                   "donor_offset_s": round(offset / sr, 4), "gain": round(gain, 4)}
        return PseudoFake(EditedEntry(entry, audio=new), None, details)

    def _shift(self, entry, positions, audio, sr, rng) -> PseudoFake:
        best = None
        t0, t1 = clip_span(entry, positions)
        offset = entry.meta.audio.start_time
        tries = max(1, int(self.options["tries"]))
        for attempt in range(1, tries + 1):
            seconds = _uniform(rng, self.options["shift_s"]) * float(rng.choice([-1.0, 1.0]))
            samples = int(round(seconds * sr))
            new = normalise_audio(np.roll(audio, samples))
            candidate = EditedEntry(entry, audio=new)
            speech = entry_speech(candidate)
            score = speech.fraction(t0 - offset, t1 - offset)
            held = speech.holds_speech(t0 - offset, t1 - offset)
            if best is None or held or score > best[0]:
                best = (score, candidate, samples, held, attempt)
            if held:
                break
        _, candidate, samples, held, attempt = best
        details = {"mode": "shift", "shift_s": round(samples / sr, 5), "shift_samples": samples,
                   "clip_holds_speech": bool(held), "draws": attempt}
        return PseudoFake(candidate, None, details)

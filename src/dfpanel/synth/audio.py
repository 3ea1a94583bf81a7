"""Speech-like audio and the articulation envelope that drives the mouth.

A talker is a sequence of syllables (4-6 per second, with pauses between phrases). Each syllable is a
voiced vowel (a glottal sawtooth at the speaker's pitch, shaped by three formant resonators) with a short
consonant noise burst at its onset, under a smooth rise-fall envelope. The same envelope, sampled at the
video frame times, is how far the mouth opens, so lips and voice move together in real videos. Videos
without an audio track still get the envelope, so their mouths still talk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

SAMPLE_RATE = 16_000

# F1, F2, F3 (Hz) of five vowels.
_VOWELS = np.array([[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480], [570, 840, 2410]])


@dataclass
class Speech:
    audio: np.ndarray  # float32 mono, SAMPLE_RATE Hz, peak about 0.5
    envelope: np.ndarray  # float32 per audio sample: articulation 0..1 (how open the mouth is)
    sample_rate: int = SAMPLE_RATE

    def mouth_per_frame(self, fps: float, n_frames: int) -> np.ndarray:
        """Mouth opening per video frame: the envelope averaged over each frame's time span."""
        edges = np.round(np.arange(n_frames + 1) * self.sample_rate / fps).astype(int)
        edges = np.clip(edges, 0, len(self.envelope))
        csum = np.concatenate([[0.0], np.cumsum(self.envelope, dtype=np.float64)])
        width = np.maximum(edges[1:] - edges[:-1], 1)
        return ((csum[edges[1:]] - csum[edges[:-1]]) / width).astype(np.float32)


def _resonator(x: np.ndarray, freq: float, bandwidth: float, sr: int) -> np.ndarray:
    r = np.exp(-np.pi * bandwidth / sr)
    theta = 2 * np.pi * freq / sr
    return lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], x)


def make_speech(seed: int, seconds: float, f0: float = 140.0, sample_rate: int = SAMPLE_RATE) -> Speech:
    """Deterministic speech-like audio for this seed."""
    rng = np.random.default_rng([seed, 0xA0D1])
    n = max(int(round(seconds * sample_rate)), 1)
    t = np.arange(n, dtype=np.float64) / sample_rate
    # Pitch: speaker's f0 with slow intonation and a falling phrase line.
    pitch = f0 * (1 + 0.09 * np.sin(2 * np.pi * rng.uniform(0.3, 0.9) * t + rng.uniform(0, 6.3)) - 0.04 * (t % 2.0))
    phase = np.cumsum(pitch / sample_rate)
    source = 2.0 * (phase % 1.0) - 1.0
    source = lfilter([0.3], [1, -0.7], source)  # soften the sawtooth towards a glottal pulse

    audio = np.zeros(n)
    envelope = np.zeros(n)
    pos = rng.uniform(0.05, 0.3)
    while pos < seconds - 0.08:
        if rng.random() < 0.18:
            pos += rng.uniform(0.15, 0.45)  # pause between phrases
            continue
        dur = rng.uniform(0.11, 0.28)
        a, b = int(pos * sample_rate), min(int((pos + dur) * sample_rate), n)
        if b - a < 16:
            break
        x = np.linspace(0.0, 1.0, b - a)
        shape = np.sin(np.pi * x) ** 1.4
        loud, openness = rng.uniform(0.5, 1.0), rng.uniform(0.55, 1.0)
        f1, f2, f3 = _VOWELS[rng.integers(len(_VOWELS))] * rng.uniform(0.92, 1.08)
        seg = source[a:b]
        voiced = _resonator(seg, f1, 90, sample_rate) + 0.5 * _resonator(seg, f2, 110, sample_rate)
        voiced += 0.25 * _resonator(seg, f3, 160, sample_rate)
        audio[a:b] += voiced / (np.abs(voiced).max() + 1e-9) * loud * shape
        burst_len = min(int(rng.uniform(0.015, 0.04) * sample_rate), b - a)
        if rng.random() < 0.7:
            noise = np.diff(rng.standard_normal(burst_len + 1))
            audio[a : a + burst_len] += 0.25 * loud * noise * np.hanning(burst_len)
        envelope[a:b] = np.maximum(envelope[a:b], shape * openness * (0.55 + 0.45 * loud))
        pos += dur + rng.uniform(0.02, 0.09)
    audio += 0.004 * rng.standard_normal(n)  # room noise
    audio *= 0.5 / (np.abs(audio).max() + 1e-9)
    return Speech(audio=audio.astype(np.float32), envelope=envelope.astype(np.float32), sample_rate=sample_rate)


def shift_audio(audio: np.ndarray, seconds: float, sample_rate: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """The same audio moved `seconds` later (negative: earlier); the gap is filled with room noise."""
    k = int(np.clip(round(seconds * sample_rate), -(len(audio) - 1), len(audio) - 1))
    out = np.empty_like(audio)
    fill = 0.002 * np.random.default_rng([seed, 0x5F]).standard_normal(min(abs(k), len(audio))).astype(audio.dtype)
    if k >= 0:
        out[k:] = audio[: len(audio) - k] if k else audio
        out[:k] = fill
    else:
        out[:k] = audio[-k:]
        out[k:] = fill
    return out

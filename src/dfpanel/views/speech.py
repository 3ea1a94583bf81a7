"""Where a clip's audio holds speech: the voice-activity test that gates AV.

Lip-sync evidence exists only while someone speaks: a silent stretch (or music, or hiss) says nothing
about whether the mouth matches the voice, and leading silence is a dataset shortcut (FakeAVCeleb's
fakes start with silence its reals lack). So AV draws evidence only from clips inside the speech span
(leading and trailing silence trimmed) that hold speech themselves, in training, evaluation and detection.

The test is energy plus spectrum, on 25 ms frames every 10 ms:
  - loud enough: above -55 dBFS, within 40 dB of the track's loudest frame, and 9 dB above its noise
    floor (the 10th percentile of frame energies);
  - voice-like: most energy in the voice band (80-4000 Hz) and a spectrum far from flat (white or
    pink noise and hum fail one of the two).
Frames that pass are smoothed (gaps under 0.2 s filled, bursts under 60 ms dropped): syllables and the
short pauses between them are one stretch of speech.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAME_S = 0.025
HOP_S = 0.010
MIN_DBFS = -55.0
BELOW_PEAK_DB = 40.0
ABOVE_FLOOR_DB = 9.0
VOICE_BAND = (80.0, 4000.0)
MIN_VOICE_RATIO = 0.6
MAX_FLATNESS = 0.35
FILL_GAP_S = 0.20
MIN_BURST_S = 0.06
MIN_SPEECH_FRACTION = 0.5  # a clip is "speech" when at least this share of its span is


@dataclass(frozen=True)
class SpeechActivity:
    """Per 10 ms frame of an audio track, whether it holds speech; times in seconds from sample 0."""

    active: np.ndarray  # (n,) bool
    hop: float = HOP_S

    @property
    def span(self) -> tuple[float, float] | None:
        """(start, end) seconds of the first and last speech frame: the track with its leading and
        trailing silence trimmed; None when there is no speech at all."""
        idx = np.flatnonzero(self.active)
        if idx.size == 0:
            return None
        return float(idx[0] * self.hop), float((idx[-1] + 1) * self.hop)

    def fraction(self, start: float, end: float) -> float:
        """Share of [start, end) seconds that is speech (0 outside the track)."""
        if end <= start:
            return 0.0
        lo = max(0, int(np.floor(start / self.hop)))
        hi = min(len(self.active), int(np.ceil(end / self.hop)))
        if hi <= lo:
            return 0.0
        return float(self.active[lo:hi].sum()) / max(1, int(np.ceil((end - start) / self.hop)))

    def holds_speech(self, start: float, end: float) -> bool:
        """True when [start, end) lies inside the speech span and is mostly speech."""
        span = self.span
        if span is None or start < span[0] - self.hop or end > span[1] + self.hop:
            return False
        return self.fraction(start, end) >= MIN_SPEECH_FRACTION


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def speech_activity(audio: np.ndarray | None, sample_rate: int) -> SpeechActivity:
    """The voice-activity frames of a mono float track in [-1, 1] (see the module docstring)."""
    if audio is None or len(audio) == 0:
        return SpeechActivity(np.zeros(0, bool))
    x = np.asarray(audio, dtype=np.float64)
    win = max(16, int(round(FRAME_S * sample_rate)))
    hop = max(1, int(round(HOP_S * sample_rate)))
    n = 1 + max(0, len(x) - win) // hop
    if len(x) < win:
        x = np.pad(x, (0, win - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop][:n]
    frames = frames - frames.mean(axis=1, keepdims=True)
    power = np.abs(np.fft.rfft(frames * np.hanning(win), axis=1)) ** 2  # (n, win//2+1)
    freqs = np.fft.rfftfreq(win, 1.0 / sample_rate)
    total = power.sum(axis=1) + 1e-20
    energy_db = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-20)
    band = (freqs >= VOICE_BAND[0]) & (freqs <= VOICE_BAND[1])
    voice_ratio = power[:, band].sum(axis=1) / total
    flatness = np.exp(np.mean(np.log(power[:, 1:] + 1e-20), axis=1)) / (np.mean(power[:, 1:], axis=1) + 1e-20)
    floor = np.percentile(energy_db, 10)
    loud = (energy_db > MIN_DBFS) & (energy_db > energy_db.max() - BELOW_PEAK_DB) & (energy_db > floor + ABOVE_FLOOR_DB)
    active = loud & (voice_ratio >= MIN_VOICE_RATIO) & (flatness <= MAX_FLATNESS)
    # Fill short pauses (between syllables), then drop short bursts (clicks).
    gap = int(round(FILL_GAP_S / HOP_S))
    runs = _runs(active)
    for (s0, e0), (s1, _) in zip(runs, runs[1:]):
        if s1 - e0 <= gap:
            active[e0:s1] = True
    burst = int(round(MIN_BURST_S / HOP_S))
    for s, e in _runs(active):
        if e - s < burst:
            active[s:e] = False
    return SpeechActivity(active)


def entry_speech(entry) -> SpeechActivity:
    """The speech activity of a cache entry's audio, computed once per entry object (an entry is
    read-only, and its audio is decoded once anyway). Times are from the entry's audio sample 0;
    `clip_speech` converts from the frames' clock."""
    base = getattr(entry, "base", None)
    if base is not None and not getattr(entry, "audio_edited", True):
        return entry_speech(base)  # an augmented entry shares its base's audio: reuse its activity
    cached = entry.__dict__.get("_speech_activity")
    if cached is None:
        audio = entry.audio if entry.meta.audio is not None else None
        rate = entry.meta.audio.sample_rate if entry.meta.audio is not None else 16000
        cached = speech_activity(audio, rate)
        entry.__dict__["_speech_activity"] = cached
    return cached


def clip_span(entry, positions) -> tuple[float, float]:
    """[first frame time, last frame time + one frame) of a clip, on the frames' clock."""
    times = [entry.meta.frames[p].time for p in positions]
    distinct = sorted(set(times))
    dur = (distinct[-1] - distinct[0]) / (len(distinct) - 1) if len(distinct) > 1 else 1.0 / max(entry.meta.fps, 1e-3)
    return float(distinct[0]), float(distinct[-1] + dur)


def clip_speech(entry, positions) -> bool:
    """Does this clip of frames lie inside the track's speech span and mostly hold speech?"""
    if entry.meta.audio is None:
        return False
    t0, t1 = clip_span(entry, positions)
    offset = entry.meta.audio.start_time
    return entry_speech(entry).holds_speech(t0 - offset, t1 - offset)

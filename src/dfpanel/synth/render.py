"""Rendering one clip into all the videos made from it (the real one, its fakes, each compression).

A `Clip` is a scene + a person + their speech. Its `Output`s are the files built from it: the real
video and fakes that differ by manipulation, and the same content at several compression levels. The
clip's frames are rendered once and every output's encoder is fed from them, so a target and its five
FF++ fakes cost little more than the target alone.

Outputs that show the real pixels (the real video and fakes that change only the sound) at the same
crf share one encoded video stream by construction: it is encoded once, and each other such output is
written by copying its H.264 packets next to its own AAC track, so an audio fake's video is the real
video's, packet for packet, whatever the encoder or machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from dfpanel.synth.audio import SAMPLE_RATE, make_speech
from dfpanel.synth.faces import Identity, make_identity
from dfpanel.synth.manipulations import VISUAL, FakeTraces, fake_audio
from dfpanel.synth.scene import Scene, light_angle
from dfpanel.synth.video import VideoWriter, encoded_like, remux_with_audio


@dataclass(frozen=True)
class Clip:
    key: str  # unique in the dataset; seeds everything about the clip
    identity: int  # identity seed of the person in the scene
    scene: int  # seed of background, light and motion
    speech: int  # seed of what the person says
    seconds: float
    size: tuple[int, int]
    fps: float

    @property
    def n_frames(self) -> int:
        return max(int(round(self.seconds * self.fps)), 1)


@dataclass
class Output:
    path: str  # relative to the dataset root
    label: int  # 0 real, 1 fake
    fake_type: str
    manipulations: tuple[str, ...] = ()
    crf: int = 23
    audio: bool = False  # write an AAC track
    source: int | None = None  # identity seed of the face put in (face_swap) or the driving source
    trace_seed: int = 0
    fine_blend: bool = False
    region: str = "face"  # where recompress applies: "face" or "mouth"
    identity_name: str = ""
    source_name: str | None = None
    split: str | None = None
    details: dict = field(default_factory=dict)


@lru_cache(maxsize=64)
def identity(seed: int) -> Identity:
    return make_identity(seed)


def clip_speech(clip: Clip):
    return make_speech(clip.speech, clip.seconds, identity(clip.identity).voice_f0)


def clip_scene(clip: Clip) -> Scene:
    return Scene(clip.scene, clip.size, clip.fps, clip.n_frames)


def face_boxes(clip: Clip, frames) -> np.ndarray:
    """Face box (x1, y1, x2, y2) a detector should report in each of `frames` of this clip's real video."""
    scene, person = clip_scene(clip), identity(clip.identity)
    return np.array([scene.face_box(person, i) for i in frames])


def describe(clip: Clip, out: Output) -> dict:
    """The trace parameters of an output, without rendering (for the sidecar)."""
    scene = None
    details: dict = {}
    if any(m in out.manipulations for m in ("face_swap", "relight", "recompress", "temporal_jitter")):
        scene = SimpleNamespace(light_angle=light_angle(clip.scene))  # all a trace's set-up reads
        src = identity(out.source) if out.source is not None and "face_swap" in out.manipulations else None
        details.update(FakeTraces(out.manipulations, out.trace_seed, scene, identity(clip.identity), src,
                                  fine_blend=out.fine_blend, region=out.region).details)
    if out.audio and any(m in out.manipulations for m in ("audio_shift", "audio_replace")):
        f0 = identity(clip.identity).voice_f0  # what the details record must match what render_clip uses
        _, audio_details = fake_audio(out.manipulations, out.trace_seed, np.zeros(8, np.float32), 0.0, f0, SAMPLE_RATE)
        details.update(audio_details)
    return details


def _real_pixels(o: Output) -> bool:
    """Whether the output's frames are the real video's (no visual manipulation; sound may differ)."""
    return not any(m in VISUAL for m in o.manipulations)


def render_clip(clip: Clip, outputs: list[Output], root: Path) -> list[str]:
    """Write every output of `clip` not already on disk; returns the paths written.

    Outputs whose pixels are the real ones (no visual manipulation) are grouped by crf; a group's video
    is encoded once -- into the first output of the group still to write -- and the group's other
    outputs copy its packets (`remux_with_audio`). When an output of the group is already on disk
    (a resumed run) and holds the stream this clip and crf give, the missing ones copy that file's
    packets instead and the group needs no encoding, so they carry exactly the video already there.
    """
    todo = [o for o in outputs if not (root / o.path).is_file()]
    if not todo:
        return []
    person, scene, speech = identity(clip.identity), clip_scene(clip), clip_speech(clip)
    encode: list[Output] = []  # outputs with their own encoder, fed the rendered frames
    copies: list[tuple[Output, Path]] = []  # outputs written from another file's encoded video
    groups: dict[int, list[Output]] = {}
    for o in todo:
        if _real_pixels(o):
            groups.setdefault(o.crf, []).append(o)
        else:
            encode.append(o)
    for crf, group in groups.items():
        done = [root / o.path for o in outputs if _real_pixels(o) and o.crf == crf and (root / o.path).is_file()]
        source = next((p for p in done if encoded_like(p, clip.size, clip.fps, crf, clip.n_frames)), None)
        if source is None:  # nothing usable on disk: encode the group's stream into its first output
            encode.append(group[0])
            source, group = root / group[0].path, group[1:]
        copies.extend((o, source) for o in group)
    order = {o.path: k for k, o in enumerate(todo)}
    encode.sort(key=lambda o: order[o.path])

    def audio_of(o: Output):
        if not o.audio:
            return None
        return fake_audio(o.manipulations, o.trace_seed, speech.audio, clip.seconds, person.voice_f0, SAMPLE_RATE)[0]

    writers = []
    try:
        if encode:
            traces = []
            for o in encode:
                src = identity(o.source) if o.source is not None and "face_swap" in o.manipulations else None
                traces.append(FakeTraces(o.manipulations, o.trace_seed, scene, person, src,
                                         fine_blend=o.fine_blend, region=o.region))
                writers.append(VideoWriter(root / o.path, clip.size, clip.fps, o.crf, SAMPLE_RATE if o.audio else None))
            mouth = speech.mouth_per_frame(clip.fps, clip.n_frames)
            for i in range(clip.n_frames):
                state = scene.state(i, mouth)
                affine = scene.affine(i)
                composite = scene.compose(i, person, state, affine)
                real = scene.finish(i, composite)
                for trace, writer in zip(traces, writers):
                    writer.write(trace.frame(i, composite, real, state, affine) if trace.changes_pixels else real)
            for o, writer in zip(encode, writers):
                writer.close(audio_of(o))
        for o, source in copies:
            remux_with_audio(source, root / o.path, SAMPLE_RATE if o.audio else None, audio_of(o))
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    return [o.path for o in todo]

"""What each dataset layout contains: its clips, the files made from them, and its own index files.

A `Plan` is everything `synthesize` writes, decided up front from the seed: clips and their outputs
(paths as in the real releases), the dataset's index files (FF++ splits, Celeb-DF test list, DFDC
metadata.json, FakeAVCeleb meta_data.csv) and the sidecar entries. Nothing here touches pixels.

How `videos` counts, per layout (real source videos):
- ffpp: original videos; each gets one fake per method (target_source naming, sources paired as in FF++).
- celebdf: real clips across Celeb-real (about 2/3) and YouTube-real (1/3); each Celeb-real clip gets
  up to two Celeb-synthesis fakes with the faces of other celebrities.
- dfdc: real videos per part; each gets one fake (visual, audio-only or both).
- fakeavceleb: RealVideo-RealAudio clips; each gets one fake in each of the other three categories.
- folder: real videos; each gets one fake, cycling through all manipulation recipes.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field

import numpy as np

from dfpanel.data.synth.render import Clip, Output

LAYOUTS = ("ffpp", "celebdf", "dfdc", "fakeavceleb", "folder")
COMPRESSION_CRF = {"c0": 1, "c23": 23, "c40": 40}  # c0: near-lossless
DEFAULT_CRF = 23

# FF++ methods -> the traces they leave (and blending style).
FFPP_METHODS = {
    "Deepfakes": dict(manipulations=("face_swap", "recompress")),
    "Face2Face": dict(manipulations=("temporal_jitter", "recompress")),
    "FaceSwap": dict(manipulations=("face_swap", "relight")),
    "NeuralTextures": dict(manipulations=("recompress",), region="mouth"),
    "FaceShifter": dict(manipulations=("face_swap",), fine_blend=True),
}

# Mixed recipes for DFDC and the plain folder layout.
MIXED_RECIPES = (
    ("face_swap", "recompress"),
    ("audio_shift",),
    ("face_swap", "relight"),
    ("temporal_jitter", "recompress"),
    ("audio_replace",),
    ("face_swap", "temporal_jitter", "audio_replace"),
    ("relight", "recompress"),
    ("face_swap",),
)

# FakeAVCeleb categories: type -> (category letter, [(method, manipulations, options, file suffix)]).
FAVC_RACES = ("African", "Asian (East)", "Asian (South)", "Caucasian (American)", "Caucasian (European)")
FAVC_FAKES = {
    "RealVideo-FakeAudio": ("B", [("rtvc", ("audio_replace",), {}, "rtvc")]),
    "FakeVideo-RealAudio": ("C", [
        ("faceswap", ("face_swap", "recompress"), {}, "faceswap"),
        ("fsgan", ("face_swap", "temporal_jitter"), {"fine_blend": True}, "fsgan"),
        ("wav2lip", ("recompress",), {"region": "mouth"}, "wavtolip"),
    ]),
    "FakeVideo-FakeAudio": ("D", [
        ("faceswap-wav2lip", ("face_swap", "audio_replace"), {}, "faceswap-wavtolip"),
        ("fsgan-wav2lip", ("face_swap", "temporal_jitter", "audio_replace"), {"fine_blend": True}, "fsgan-wavtolip"),
        ("wav2lip", ("recompress", "audio_replace"), {"region": "mouth"}, "wavtolip"),
    ]),
}


@dataclass
class Plan:
    clips: list[tuple[Clip, list[Output]]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # relative path -> text (the dataset's index files)

    @property
    def outputs(self) -> list[Output]:
        return [o for _, outs in self.clips for o in outs]


class _Seeds:
    """Stable seeds derived from the run seed and a name (independent of creation order)."""

    def __init__(self, seed: int):
        self.seed = seed

    def __call__(self, *parts) -> int:
        return int(np.random.default_rng([self.seed, zlib.crc32("/".join(map(str, parts)).encode())]).integers(2**31))


def _split_counts(n: int) -> tuple[int, int, int]:
    """train/val/test group counts: about 72/14/14 like FF++, at least one in each when n >= 3."""
    if n >= 3:
        val = test = max(1, round(0.14 * n))
        return n - val - test, val, test
    return (n, 0, 0) if n < 2 else (1, 0, 1)


def _assign_splits(groups: list, rng: np.random.Generator) -> dict:
    order = list(groups)
    rng.shuffle(order)
    n_train, n_val, _ = _split_counts(len(order))
    return {g: ("train" if k < n_train else "val" if k < n_train + n_val else "test") for k, g in enumerate(order)}


def _clip(seeds: _Seeds, key: str, person: int, seconds, size, fps) -> Clip:
    return Clip(key=key, identity=person, scene=seeds("scene", key), speech=seeds("speech", key),
                seconds=seconds, size=size, fps=fps)


def plan_ffpp(videos, seconds, size, fps, seed, compressions, parts) -> Plan:
    seeds = _Seeds(seed)
    names = [f"{k:03d}" for k in range(videos)]
    people = {n: seeds("ffpp-person", n) for n in names}
    pairs = [(names[k], names[k + 1]) for k in range(0, videos - 1, 2)]
    if videos % 2:  # odd count: the last video takes its source from the one before it
        pairs.append((names[-1], names[-2]))
    pair_split = _assign_splits(range(videos // 2), np.random.default_rng([seed, 0xF5]))
    if videos % 2:  # the odd extra pair shares its split with the pair holding its source video
        pair_split[len(pairs) - 1] = pair_split[len(pairs) - 2]
    source_of, split_of = {}, {}
    for k, (a, b) in enumerate(pairs):
        source_of.setdefault(a, b)
        source_of.setdefault(b, a)
        split_of.setdefault(a, pair_split[k])
        split_of.setdefault(b, pair_split[k])
    plan = Plan()
    for name in names:
        clip = _clip(seeds, f"ffpp/{name}", people[name], seconds, size, fps)
        src = source_of[name]
        outs = []
        for comp in compressions:
            crf = COMPRESSION_CRF[comp]
            outs.append(Output(f"original_sequences/youtube/{comp}/videos/{name}.mp4", 0, "real", crf=crf,
                               identity_name=f"ffpp-{name}", split=split_of[name]))
            for method, spec in FFPP_METHODS.items():
                outs.append(Output(
                    f"manipulated_sequences/{method}/{comp}/videos/{name}_{src}.mp4", 1, method,
                    manipulations=spec["manipulations"], crf=crf, source=people[src],
                    trace_seed=seeds("trace", method, name), fine_blend=spec.get("fine_blend", False),
                    region=spec.get("region", "face"), identity_name=f"ffpp-{name}", source_name=f"ffpp-{src}",
                    split=split_of[name]))
        plan.clips.append((clip, outs))
    for split in ("train", "val", "test"):
        listed = [[a, b] for k, (a, b) in enumerate(pairs) if pair_split[k] == split]
        plan.files[f"splits/{split}.json"] = json.dumps(listed) + "\n"
    return plan


def plan_celebdf(videos, seconds, size, fps, seed, compressions, parts) -> Plan:
    seeds = _Seeds(seed)
    rng = np.random.default_rng([seed, 0xCE1])
    n_youtube = videos // 3
    n_celeb = videos - n_youtube
    n_ids = min(n_celeb, max(3, -(-n_celeb // 2)))  # about two clips each; three or more so fakes vary
    celeb_clips = [(k % n_ids, k // n_ids) for k in range(n_celeb)]  # (identity, clip number)
    people = {i: seeds("celeb", i) for i in range(n_ids)}
    test_ids = set(rng.permutation(n_ids)[: max(1, round(n_ids / 3))].tolist()) if n_ids >= 3 else {n_ids - 1}
    test_youtube = set(rng.permutation(n_youtube)[: max(1, round(n_youtube / 3))].tolist()) if n_youtube >= 2 else set()
    plan = Plan()
    test_lines = []
    for ident, num in celeb_clips:
        path = f"Celeb-real/id{ident}_{num:04d}.mp4"
        split = "test" if ident in test_ids else "train"
        clip = _clip(seeds, f"celebdf/{path}", people[ident], seconds, size, fps)
        outs = [Output(path, 0, "real", identity_name=f"celebdf-id{ident}", split=split)]
        others = [j for j in range(n_ids) if j != ident]
        for j in [others[(ident + num + t) % len(others)] for t in range(min(2, len(others)))]:
            fake = f"Celeb-synthesis/id{ident}_id{j}_{num:04d}.mp4"
            extra = [(), ("relight",), ("temporal_jitter",), ("recompress",)][(ident + j + num) % 4]
            outs.append(Output(fake, 1, "Celeb-synthesis", manipulations=("face_swap",) + extra, source=people[j],
                               trace_seed=seeds("trace", fake), fine_blend=True, identity_name=f"celebdf-id{ident}",
                               source_name=f"celebdf-id{j}", split=split))
        plan.clips.append((clip, outs))
        test_lines += [f"{1 - o.label} {o.path}" for o in outs if split == "test"]
    for k in range(n_youtube):
        path = f"YouTube-real/{k:05d}.mp4"
        split = "test" if k in test_youtube else "train"
        clip = _clip(seeds, f"celebdf/{path}", seeds("youtube", k), seconds, size, fps)
        plan.clips.append((clip, [Output(path, 0, "real", identity_name=f"celebdf-yt{k:05d}", split=split)]))
        if split == "test":
            test_lines.append(f"1 {path}")
    # Celeb-DF's own convention in this file: 1 = real, 0 = fake.
    plan.files["List_of_testing_videos.txt"] = "\n".join(test_lines) + "\n"
    return plan


def _dfdc_name(rng: np.random.Generator, taken: set) -> str:
    while True:
        name = "".join(chr(97 + c) for c in rng.integers(0, 26, 10)) + ".mp4"
        if name not in taken:
            taken.add(name)
            return name


def plan_dfdc(videos, seconds, size, fps, seed, compressions, parts) -> Plan:
    seeds = _Seeds(seed)
    rng = np.random.default_rng([seed, 0xDFDC])
    taken: set = set()
    plan = Plan()
    for part in range(parts):
        folder = f"dfdc_train_part_{part}"
        meta = {}
        start = int(rng.integers(len(MIXED_RECIPES)))
        for k in range(videos):
            real, fake = _dfdc_name(rng, taken), _dfdc_name(rng, taken)
            person, donor = seeds("dfdc-person", part, k), seeds("dfdc-donor", part, k)
            recipe = MIXED_RECIPES[(start + k) % len(MIXED_RECIPES)]
            clip = _clip(seeds, f"dfdc/{folder}/{real}", person, seconds, size, fps)
            ident = f"dfdc-{part}-{k}"
            outs = [
                Output(f"{folder}/{real}", 0, "real", audio=True, identity_name=ident, split="train"),
                Output(f"{folder}/{fake}", 1, "+".join(recipe), manipulations=recipe, audio=True,
                       source=donor if "face_swap" in recipe else None, trace_seed=seeds("trace", folder, fake),
                       identity_name=ident, source_name=f"dfdc-{part}-{k}-donor" if "face_swap" in recipe else None,
                       split="train"),
            ]
            plan.clips.append((clip, outs))
            meta[real] = {"label": "REAL", "split": "train", "original": None}
            meta[fake] = {"label": "FAKE", "split": "train", "original": real}
        plan.files[f"{folder}/metadata.json"] = json.dumps(meta) + "\n"
    return plan


def plan_fakeavceleb(videos, seconds, size, fps, seed, compressions, parts) -> Plan:
    seeds = _Seeds(seed)
    rng = np.random.default_rng([seed, 0xFA7])
    ids = [f"id{n:05d}" for n in rng.choice(100_000, size=videos, replace=False)]
    clips = [f"{n:05d}" for n in rng.choice(100_000, size=videos, replace=False)]
    races = [FAVC_RACES[int(r)] for r in rng.integers(0, len(FAVC_RACES), videos)]
    genders = [("men", "women")[int(g)] for g in rng.integers(0, 2, videos)]
    people = {i: seeds("favc", i) for i in ids}
    split_of = _assign_splits(ids, np.random.default_rng([seed, 0xFA8]))
    rows = ["source,target1,target2,method,category,type,race,gender,path,"]
    plan = Plan()
    for k, (ident, num, race, gender) in enumerate(zip(ids, clips, races, genders)):
        folder = f"{race}/{gender}/{ident}"
        real = f"RealVideo-RealAudio/{folder}/{num}.mp4"
        clip = _clip(seeds, f"fakeavceleb/{real}", people[ident], seconds, size, fps)
        outs = [Output(real, 0, "RealVideo-RealAudio", audio=True, identity_name=ident, split=split_of[ident])]
        rows.append(f"{ident},-,-,real,A,RealVideo-RealAudio,{race},{gender},{num}.mp4,FakeAVCeleb/RealVideo-RealAudio/{folder}")
        other = ids[(k + 1) % len(ids)] if len(ids) > 1 else f"id{(int(ident[2:]) + 1) % 100_000:05d}"
        for kind, (letter, methods) in FAVC_FAKES.items():
            method, manips, opts, suffix = methods[(k + len(kind)) % len(methods)]
            number = int(rng.integers(0, 20))
            fname = f"{num}_{number}_{other}_{suffix}.mp4" if kind != "RealVideo-FakeAudio" else f"{num}_{number}_{other}.mp4"
            path = f"{kind}/{folder}/{fname}"
            donor = people.get(other, seeds("favc", other))
            outs.append(Output(path, 1, kind, manipulations=manips, audio=True,
                               source=donor if "face_swap" in manips else None, trace_seed=seeds("trace", path),
                               identity_name=ident, source_name=other if "face_swap" in manips else None,
                               split=split_of[ident], **opts))
            rows.append(f"{ident},{other},{number},{method},{letter},{kind},{race},{gender},{fname},FakeAVCeleb/{kind}/{folder}")
        plan.clips.append((clip, outs))
    plan.files["meta_data.csv"] = "\n".join(rows) + "\n"
    return plan


def plan_folder(videos, seconds, size, fps, seed, compressions, parts) -> Plan:
    seeds = _Seeds(seed)
    people = [seeds("folder-person", k) for k in range(videos)]
    split_of = _assign_splits(range(videos), np.random.default_rng([seed, 0xF01]))
    plan = Plan()
    for k in range(videos):
        recipe = MIXED_RECIPES[k % len(MIXED_RECIPES)]
        clip = _clip(seeds, f"folder/{k}", people[k], seconds, size, fps)
        ident = f"folder-{k:04d}"
        fake = f"fake/fake_{k:04d}.mp4"
        donor = seeds("folder-donor", k)
        plan.clips.append((clip, [
            Output(f"real/real_{k:04d}.mp4", 0, "real", audio=True, identity_name=ident, split=split_of[k]),
            Output(fake, 1, "+".join(recipe), manipulations=recipe, audio=True,
                   source=donor if "face_swap" in recipe else None, trace_seed=seeds("trace", fake),
                   identity_name=ident, source_name=f"{ident}-donor" if "face_swap" in recipe else None,
                   split=split_of[k]),
        ]))
    return plan


PLANNERS = {
    "ffpp": plan_ffpp,
    "celebdf": plan_celebdf,
    "dfdc": plan_dfdc,
    "fakeavceleb": plan_fakeavceleb,
    "folder": plan_folder,
}
MIN_VIDEOS = {"ffpp": 2, "celebdf": 2, "dfdc": 1, "fakeavceleb": 1, "folder": 1}

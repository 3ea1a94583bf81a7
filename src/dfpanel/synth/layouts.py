"""What each dataset layout contains: its clips, the files made from them, and its own index files.

A `Plan` is everything `synthesize` writes, decided up front from the seed: clips and their outputs
(paths as in the real releases), the dataset's index files (FF++ splits, Celeb-DF test list, DFDC
metadata.json, FakeAVCeleb meta_data.csv) and the sidecar entries. Nothing here touches pixels.

How `videos` counts, per layout (real source videos):
- ffpp: original videos; each gets one fake per method (target_source naming, sources paired as in FF++).
- celebdf: real clips across Celeb-real (about 2/3) and YouTube-real (1/3); each Celeb-real clip gets
  up to two Celeb-synthesis fakes with the faces of other celebrities.
- dfdc: real videos per part; each gets one fake (visual, audio-only or both). `test_videos` more real
  videos (and their fakes) make the public test set, test/labels.csv.
- fakeavceleb: RealVideo-RealAudio clips; each gets one fake in each of the other three categories.
- folder: real videos; each gets one fake, cycling through all manipulation recipes (or, with
  `traces`, one fake per listed trace, each carrying that trace alone, under fake/<trace>/).

Split sizes follow the real releases: FF++ 720/140/140 originals (about 72/14/14), Celeb-DF's test
list 518 of 6529 videos (about 8%, 1/3 of them real), DFDC's public test set next to the train parts.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field

import numpy as np

from dfpanel.synth.render import Clip, Output

LAYOUTS = ("ffpp", "celebdf", "dfdc", "fakeavceleb", "folder")
COMPRESSION_CRF = {"c0": 1, "c23": 23, "c40": 40}  # c0: near-lossless
DEFAULT_CRF = 23
DFDC_TEST_DIR = "test"  # the public test set: test/labels.csv, videos beside it

# FF++ methods -> the traces they leave (and blending style).
FFPP_METHODS = {
    "Deepfakes": dict(manipulations=("face_swap", "recompress")),
    "Face2Face": dict(manipulations=("temporal_jitter", "recompress")),
    "FaceSwap": dict(manipulations=("face_swap", "relight")),
    "NeuralTextures": dict(manipulations=("recompress",), region="mouth"),
    "FaceShifter": dict(manipulations=("face_swap",), fine_blend=True),
}

AUDIO_MANIPULATIONS = {"audio_shift", "audio_replace"}

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
    """train/val/test group counts, 72/14/14 like FF++: val = test = max(1, round(0.14 n)) when n >= 3.

    Below 3 groups there cannot be three splits: 2 groups give train + test, 1 gives train only.
    """
    if n >= 3:
        val = test = max(1, round(0.14 * n))
        return n - val - test, val, test
    return (n, 0, 0) if n < 2 else (1, 0, 1)


def ffpp_split_counts(n: int) -> tuple[int, int, int]:
    """train/val/test originals for FF++: 72/14/14, in whole swap pairs.

    A split lists pairs of videos swapped with each other (an odd one joins a pair as a triple), so a
    held-out split needs at least 2 originals and train keeps at least 2: val = test =
    max(2, round(0.14 n)) from n = 6 on; n = 4-5 gives train + test (2); n = 2-3 train only.
    """
    held = max(2, round(0.14 * n))
    if n >= 2 + 2 * held:
        return n - 2 * held, held, held
    return (n - 2, 0, 2) if n >= 4 else (n, 0, 0)


def _assign_splits(groups: list, rng: np.random.Generator) -> dict:
    order = list(groups)
    rng.shuffle(order)
    n_train, n_val, _ = _split_counts(len(order))
    return {g: ("train" if k < n_train else "val" if k < n_train + n_val else "test") for k, g in enumerate(order)}


def _clip(seeds: _Seeds, key: str, person: int, seconds, size, fps) -> Clip:
    return Clip(key=key, identity=person, scene=seeds("scene", key), speech=seeds("speech", key),
                seconds=seconds, size=size, fps=fps)


def _pairs(members: list[str]) -> list[tuple[str, str]]:
    """Consecutive members swapped with each other; an odd last one takes its source from the one before."""
    pairs = [(members[k], members[k + 1]) for k in range(0, len(members) - 1, 2)]
    if len(members) % 2 and len(members) > 1:
        pairs.append((members[-1], members[-2]))
    return pairs


def plan_ffpp(videos, seconds, size, fps, seed, compressions, parts, test_videos) -> Plan:
    seeds = _Seeds(seed)
    names = [f"{k:03d}" for k in range(videos)]
    people = {n: seeds("ffpp-person", n) for n in names}
    order = list(names)
    np.random.default_rng([seed, 0xF5]).shuffle(order)
    n_train, n_val, _ = ffpp_split_counts(videos)
    split_of = {v: ("train" if k < n_train else "val" if k < n_train + n_val else "test") for k, v in enumerate(order)}
    # Pairs form inside a split, so every fake's target and face donor sit in the same split.
    pairs_of = {s: _pairs(sorted(v for v in names if split_of[v] == s)) for s in ("train", "val", "test")}
    # FF++ swaps both ways within a listed pair (a_b and b_a), so every pair a split file lists has both
    # fakes; in an odd split's triple the middle member is the target of two swaps.
    sources_of: dict[str, list[str]] = {}
    for a, b in (pair for pairs in pairs_of.values() for pair in pairs):
        for target, src in ((a, b), (b, a)):
            if src not in sources_of.setdefault(target, []):
                sources_of[target].append(src)
    plan = Plan()
    for name in names:
        clip = _clip(seeds, f"ffpp/{name}", people[name], seconds, size, fps)
        outs = []
        for comp in compressions:
            crf = COMPRESSION_CRF[comp]
            outs.append(Output(f"original_sequences/youtube/{comp}/videos/{name}.mp4", 0, "real", crf=crf,
                               identity_name=f"ffpp-{name}", split=split_of[name]))
            for k, src in enumerate(sources_of.get(name, [])):
                for method, spec in FFPP_METHODS.items():
                    outs.append(Output(
                        f"manipulated_sequences/{method}/{comp}/videos/{name}_{src}.mp4", 1, method,
                        manipulations=spec["manipulations"], crf=crf, source=people[src],
                        trace_seed=seeds("trace", method, name, *([src] if k else [])), fine_blend=spec.get("fine_blend", False),
                        region=spec.get("region", "face"), identity_name=f"ffpp-{name}", source_name=f"ffpp-{src}",
                        split=split_of[name]))
        plan.clips.append((clip, outs))
    for split, pairs in pairs_of.items():
        plan.files[f"splits/{split}.json"] = json.dumps([[a, b] for a, b in pairs]) + "\n"
    return plan


def plan_celebdf(videos, seconds, size, fps, seed, compressions, parts, test_videos) -> Plan:
    seeds = _Seeds(seed)
    rng = np.random.default_rng([seed, 0xCE1])
    n_youtube = videos // 3
    n_celeb = videos - n_youtube
    n_ids = min(n_celeb, max(3, -(-n_celeb // 2)))  # about two clips each; three or more so fakes vary
    celeb_clips = [(k % n_ids, k // n_ids) for k in range(n_celeb)]  # (identity, clip number)
    people = {i: seeds("celeb", i) for i in range(n_ids)}
    n_fakes = min(2, n_ids - 1)  # per Celeb-real clip
    test_clips, test_youtube = _celebdf_test(celeb_clips, n_youtube, n_fakes, rng)
    plan = Plan()
    test_lines = []
    for ident, num in celeb_clips:
        path = f"Celeb-real/id{ident}_{num:04d}.mp4"
        split = "test" if (ident, num) in test_clips else "train"
        clip = _clip(seeds, f"celebdf/{path}", people[ident], seconds, size, fps)
        outs = [Output(path, 0, "real", identity_name=f"celebdf-id{ident}", split=split)]
        others = [j for j in range(n_ids) if j != ident]
        for j in [others[(ident + num + t) % len(others)] for t in range(n_fakes)]:
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


def celebdf_test_size(n_videos: int, clip_videos: int) -> tuple[int, int]:
    """(wanted, most) videos in the Celeb-DF test list: about 8% like the release (518 of 6529), at most
    a quarter, but never less than one Celeb-real clip with its fakes (`clip_videos`), the smallest
    unit with a real and a fake; below about 13 videos that unit alone is more than a quarter."""
    most = max(clip_videos, n_videos // 4)
    return min(max(2, round(0.08 * n_videos)), most), most


def _celebdf_test(celeb_clips, n_youtube, n_fakes, rng) -> tuple[set, set]:
    """Celeb-real clips (each with its fakes) and YouTube-real clips for the test list.

    About 1/3 real like the release: clips are taken, identity by identity in a seeded order, until
    the list holds its share of fakes; then YouTube-real clips until it holds its share of reals
    (one at least when there are two or more, as the release lists both kinds of real).
    """
    n_videos = len(celeb_clips) * (1 + n_fakes) + n_youtube
    wanted, most = celebdf_test_size(n_videos, 1 + n_fakes)
    want_real = max(1, round(wanted / 3))
    want_fake = max(1, wanted - want_real)
    by_identity: dict[int, list] = {}
    for ident, num in celeb_clips:
        by_identity.setdefault(ident, []).append((ident, num))
    clips, size, reals, fakes = set(), 0, 0, 0
    for ident in rng.permutation(sorted(by_identity)).tolist():
        for c in by_identity[ident]:
            if fakes >= want_fake or (clips and size + 1 + n_fakes > most):
                break
            clips.add(c)
            size, reals, fakes = size + 1 + n_fakes, reals + 1, fakes + n_fakes
    youtube = set()
    for k in rng.permutation(n_youtube).tolist():
        if size + 1 > most or (reals >= want_real and (youtube or n_youtube < 2)):
            break
        youtube.add(k)
        size, reals = size + 1, reals + 1
    return clips, youtube


def _dfdc_name(rng: np.random.Generator, taken: set) -> str:
    while True:
        name = "".join(chr(97 + c) for c in rng.integers(0, 26, 10)) + ".mp4"
        if name not in taken:
            taken.add(name)
            return name


def _dfdc_pair(seeds, rng, taken, folder, key, k, recipe, split, seconds, size, fps):
    """A real DFDC video and its fake: (clip, outputs, real name, fake name)."""
    real, fake = _dfdc_name(rng, taken), _dfdc_name(rng, taken)
    person, donor = seeds("dfdc-person", key, k), seeds("dfdc-donor", key, k)
    clip = _clip(seeds, f"dfdc/{folder}/{real}", person, seconds, size, fps)
    ident = f"dfdc-{key}-{k}"
    swap = "face_swap" in recipe
    outs = [
        Output(f"{folder}/{real}", 0, "real", audio=True, identity_name=ident, split=split),
        Output(f"{folder}/{fake}", 1, "+".join(recipe), manipulations=recipe, audio=True,
               source=donor if swap else None, trace_seed=seeds("trace", folder, fake),
               identity_name=ident, source_name=f"{ident}-donor" if swap else None, split=split),
    ]
    return clip, outs, real, fake


def plan_dfdc(videos, seconds, size, fps, seed, compressions, parts, test_videos) -> Plan:
    seeds = _Seeds(seed)
    rng = np.random.default_rng([seed, 0xDFDC])
    taken: set = set()
    plan = Plan()
    for part in range(parts):
        folder = f"dfdc_train_part_{part}"
        meta = {}
        start = int(rng.integers(len(MIXED_RECIPES)))
        for k in range(videos):
            recipe = MIXED_RECIPES[(start + k) % len(MIXED_RECIPES)]
            clip, outs, real, fake = _dfdc_pair(seeds, rng, taken, folder, part, k, recipe, "train", seconds, size, fps)
            plan.clips.append((clip, outs))
            meta[real] = {"label": "REAL", "split": "train", "original": None}
            meta[fake] = {"label": "FAKE", "split": "train", "original": real}
        plan.files[f"{folder}/metadata.json"] = json.dumps(meta) + "\n"
    if test_videos:
        # The public test set: its own people (and donors), labels.csv with 1 = fake, rows by file name.
        # The cycle starts at an audio-only recipe, so from 2 videos on it holds audio-only and visual fakes.
        audio_only = [i for i, r in enumerate(MIXED_RECIPES) if set(r) <= AUDIO_MANIPULATIONS]
        start = audio_only[int(rng.integers(len(audio_only)))]
        labels = {}
        for k in range(test_videos):
            recipe = MIXED_RECIPES[(start + k) % len(MIXED_RECIPES)]
            clip, outs, real, fake = _dfdc_pair(seeds, rng, taken, DFDC_TEST_DIR, "test", k, recipe, "test",
                                                seconds, size, fps)
            plan.clips.append((clip, outs))
            labels[real], labels[fake] = 0, 1
        rows = ["filename,label"] + [f"{name},{labels[name]}" for name in sorted(labels)]
        plan.files[f"{DFDC_TEST_DIR}/labels.csv"] = "\n".join(rows) + "\n"
    return plan


def plan_fakeavceleb(videos, seconds, size, fps, seed, compressions, parts, test_videos) -> Plan:
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


def plan_folder(videos, seconds, size, fps, seed, compressions, parts, test_videos, traces=None) -> Plan:
    """One fake per real cycling through MIXED_RECIPES (fake/fake_K.mp4); with `traces`, one fake per
    listed trace instead, each carrying that trace only, under fake/<trace>/fake_K.mp4 (the folder
    indexer reads <trace> as the fake type) with the real's identity, so the pair shares a split."""
    seeds = _Seeds(seed)
    people = [seeds("folder-person", k) for k in range(videos)]
    split_of = _assign_splits(range(videos), np.random.default_rng([seed, 0xF01]))
    plan = Plan()
    for k in range(videos):
        clip = _clip(seeds, f"folder/{k}", people[k], seconds, size, fps)
        ident = f"folder-{k:04d}"
        donor = seeds("folder-donor", k)
        if traces:
            fakes = [(f"fake/{t}/fake_{k:04d}.mp4", (t,)) for t in traces]
        else:
            fakes = [(f"fake/fake_{k:04d}.mp4", MIXED_RECIPES[k % len(MIXED_RECIPES)])]
        outs = [Output(f"real/real_{k:04d}.mp4", 0, "real", audio=True, identity_name=ident, split=split_of[k])]
        for fake, recipe in fakes:
            swap = "face_swap" in recipe
            outs.append(Output(fake, 1, "+".join(recipe), manipulations=recipe, audio=True,
                               source=donor if swap else None, trace_seed=seeds("trace", fake),
                               identity_name=ident, source_name=f"{ident}-donor" if swap else None,
                               split=split_of[k]))
        plan.clips.append((clip, outs))
    return plan


PLANNERS = {
    "ffpp": plan_ffpp,
    "celebdf": plan_celebdf,
    "dfdc": plan_dfdc,
    "fakeavceleb": plan_fakeavceleb,
    "folder": plan_folder,
}
MIN_VIDEOS = {"ffpp": 2, "celebdf": 2, "dfdc": 1, "fakeavceleb": 1, "folder": 1}

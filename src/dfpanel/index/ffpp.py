"""FaceForensics++ (Rössler et al., ICCV 2019).

Tree, as written by the official `download-FaceForensics.py` (github.com/ondyari/FaceForensics)::

    ROOT/original_sequences/youtube/{raw,c23,c40}/videos/000.mp4 ... 999.mp4
    ROOT/manipulated_sequences/<Method>/{raw,c23,c40}/videos/<target>_<source>.mp4   e.g. 000_003.mp4
    ROOT/splits/{train,val,test}.json

The split files come from the same repository (dataset/splits/): each is a JSON list of pairs of
3-digit ids, e.g. `[["953", "974"], ["012", "026"], ...]` (360 train, 70 val, 70 test pairs). Both
videos of a pair were swapped with each other, giving `953_974` and `974_953` in every method, so a
pair is the unit that keeps splits identity-disjoint: it is the `group` of all four videos.

Methods are the sub-folders of manipulated_sequences (Deepfakes, Face2Face, FaceSwap,
NeuralTextures, FaceShifter). Videos whose names are not `<id>_<id>` (DeepFakeDetection's
`01_02__scene__XXXX.mp4`, original_sequences/actors) have no entry in the split files and are
left out.
"""

from __future__ import annotations

import re
from pathlib import Path

from dfpanel.errors import DataError
from dfpanel.index.base import (
    IndexOptions,
    Layout,
    MissingVideos,
    files_in,
    load_json,
    log,
    register,
)
from dfpanel.index.manifest import FAKE, REAL, SPLITS, VideoRecord, safe_id

ORIGINALS = Path("original_sequences/youtube")
MANIPULATED = Path("manipulated_sequences")
SPLIT_DIR = Path("splits")
COMPRESSIONS = ("raw", "c23", "c40")  # the official quality folders; others present on disk (e.g. synth's c0) work too
PAIR_NAME = re.compile(r"^(\d{3})_(\d{3})$")
VIDEO_ID = re.compile(r"^[A-Za-z0-9]+$")  # joined by "_" into pair names, so never holding one


@register
class FaceForensicsLayout(Layout):
    name = "ffpp"
    markers = ("original_sequences/youtube/<c23>/videos/, manipulated_sequences/<Method>/<c23>/videos/ "
               "and splits/{train,val,test}.json")

    def looks_like(self, root: Path) -> bool:
        return (root / "original_sequences").is_dir() and (root / "manipulated_sequences").is_dir()

    def index(self, root: Path, options: IndexOptions) -> list[VideoRecord]:
        comp = options.compression
        if not comp or "/" in comp or comp.startswith("."):
            raise DataError(f"unknown FF++ compression {comp!r}; use one of {', '.join(COMPRESSIONS)}")
        group_of, split_of_pair = self._read_splits(root)
        missing = MissingVideos(self.name)

        split_of = {group_of[pair.split("_")[0]]: split for pair, split in split_of_pair.items()}
        records = self._originals(root, comp, group_of, split_of, missing)
        manipulated = root / MANIPULATED
        methods = sorted(p.name for p in manipulated.iterdir() if p.is_dir()) if manipulated.is_dir() else []
        for method in methods:
            records += self._manipulated(root, method, comp, group_of, split_of_pair, missing)
        missing.warn()
        return records

    def _read_splits(self, root: Path) -> tuple[dict[str, str], dict[str, str]]:
        """id -> group, pair name -> split, from splits/*.json.

        In the real release every id is in exactly one pair, so a group is a pair. Ids shared by
        several pairs (seen in hand-made subsets) join those pairs into one group, which must then
        sit in one split.
        """
        split_of_pair: dict[str, str] = {}
        parent: dict[str, str] = {}

        def find(x: str) -> str:
            while parent.setdefault(x, x) != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for split in SPLITS:
            path = self.require(root / SPLIT_DIR / f"{split}.json",
                                "copy dataset/splits/ from github.com/ondyari/FaceForensics")
            pairs = load_json(path)
            if not isinstance(pairs, list):
                raise DataError(f"{path}: expected a JSON list of [target, source] id pairs; restore the original file")
            for i, pair in enumerate(pairs):
                if not (isinstance(pair, list) and len(pair) == 2
                        and all(isinstance(x, str) and VIDEO_ID.fullmatch(x) for x in pair)):
                    raise DataError(f"{path}: entry {i} is {pair!r}, expected a pair of id strings "
                                    f"like [\"953\", \"974\"]")
                split_of_pair["_".join(sorted(pair))] = split
                parent[find(pair[0])] = find(pair[1])

        members: dict[str, list[str]] = {}
        for vid in parent:
            members.setdefault(find(vid), []).append(vid)
        group_of = {vid: "pair_" + "_".join(sorted(ids)) for ids in members.values() for vid in ids}
        split_of_group: dict[str, str] = {}
        for pair, split in split_of_pair.items():
            group = group_of[pair.split("_")[0]]
            if split_of_group.setdefault(group, split) != split:
                raise DataError(f"{root / SPLIT_DIR}: ids {group[5:].replace('_', ', ')} are paired across "
                                f"{split_of_group[group]} and {split}; restore the original split files")
        return group_of, split_of_pair
    def _originals(self, root, comp, group_of, split_of, missing) -> list[VideoRecord]:
        folder = root / ORIGINALS / comp / "videos"
        if not folder.is_dir():
            have = sorted(p.parent.name for p in (root / ORIGINALS).glob("*/videos") if p.is_dir())
            hint = f"found {', '.join(have)}; pass --compression {have[0]}" if have else "download the original videos"
            raise DataError(f"{folder}: not found ({hint})")
        on_disk = files_in(folder)
        records = []
        for vid in sorted(group_of):
            relpath = (ORIGINALS / comp / "videos" / f"{vid}.mp4").as_posix()
            if f"{vid}.mp4" not in on_disk:
                missing.add(relpath)
                continue
            records.append(VideoRecord(
                id=safe_id("ffpp", "original", comp, vid), path=relpath, label=REAL, fake_type="real",
                split=split_of[group_of[vid]], dataset=self.name, group=group_of[vid],
                extra={"compression": comp, "video": vid},
            ))
        return records

    def _manipulated(self, root, method, comp, group_of, split_of_pair, missing) -> list[VideoRecord]:
        folder = root / MANIPULATED / method / comp / "videos"
        if not folder.is_dir():
            log.warning("ffpp: %s has no %s videos (%s missing); skipped", method, comp, folder)
            return []
        on_disk = files_in(folder)
        if not any(PAIR_NAME.match(Path(n).stem) for n in on_disk):
            return []  # e.g. DeepFakeDetection: other naming, not in the split files
        records = []
        for pair, split in sorted(split_of_pair.items()):
            a, b = pair.split("_")
            for target, source in ((a, b), (b, a)):
                name = f"{target}_{source}"
                relpath = (MANIPULATED / method / comp / "videos" / f"{name}.mp4").as_posix()
                if f"{name}.mp4" not in on_disk:
                    missing.add(relpath)
                    continue
                records.append(VideoRecord(
                    id=safe_id("ffpp", method, comp, name), path=relpath, label=FAKE, fake_type=method,
                    split=split, dataset=self.name, group=group_of[a],
                    extra={"compression": comp, "target": target, "source": source,
                           "original": (ORIGINALS / comp / "videos" / f"{target}.mp4").as_posix()},
                ))
        return records

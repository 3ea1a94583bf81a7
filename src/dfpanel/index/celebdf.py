"""Celeb-DF v2 (Li et al., CVPR 2020).

Tree, as in github.com/yuezunli/celeb-deepfakeforensics (Celeb-DF-v2/README.md)::

    ROOT/Celeb-real/id0_0000.mp4            590 real videos, <identity>_<clip>
    ROOT/YouTube-real/00000.mp4             300 real videos, one unnamed person each
    ROOT/Celeb-synthesis/id0_id1_0000.mp4   5639 fakes: id1's face on id0's clip 0000
    ROOT/List_of_testing_videos.txt         518 lines "<label> <folder>/<file>"

In the test list 1 means REAL and 0 means FAKE (the reverse of our labels), e.g.
`1 YouTube-real/00170.mp4`, `0 Celeb-synthesis/id0_id16_0007.mp4`. Every video not listed is train;
a validation split is carved out of train by identity (the target identity for fakes), so val and
train share none. The official test list does share identities with train; it is kept as is so
results stay comparable with published ones.
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
    is_video,
    register,
)
from dfpanel.index.manifest import FAKE, REAL, VideoRecord, safe_id
from dfpanel.index.splits import assign_splits

FOLDERS = {"Celeb-real": REAL, "YouTube-real": REAL, "Celeb-synthesis": FAKE}
TEST_LIST = "List_of_testing_videos.txt"
LIST_LABEL = {"1": REAL, "0": FAKE}  # Celeb-DF's own convention
VAL_FRACTION = 0.1
REAL_NAME = re.compile(r"^(id\d+)_(\d+)$")
FAKE_NAME = re.compile(r"^(id\d+)_(id\d+)_(\d+)$")


@register
class CelebDFLayout(Layout):
    name = "celebdf"
    markers = "Celeb-real/, Celeb-synthesis/, YouTube-real/ and List_of_testing_videos.txt"

    def looks_like(self, root: Path) -> bool:
        return (root / "Celeb-synthesis").is_dir() or (root / TEST_LIST).is_file()

    def index(self, root: Path, options: IndexOptions) -> list[VideoRecord]:
        test_list = self._read_test_list(self.require(root / TEST_LIST, "the official test list"))
        if not any((root / f).is_dir() for f in FOLDERS):
            self.require(root / "Celeb-synthesis")
        missing = MissingVideos(self.name)
        records: list[VideoRecord] = []
        for folder, label in FOLDERS.items():
            for name in sorted(files_in(root / folder)):
                relpath = f"{folder}/{name}"
                if is_video(Path(name)):
                    records.append(self._record(relpath, folder, label, "test" if relpath in test_list else "train"))
        found = {r.path for r in records}
        for relpath in test_list:
            if relpath not in found:
                missing.add(relpath)
        missing.warn()

        train = [r for r in records if r.split == "train"]
        assign_splits(train, {"train": 1 - VAL_FRACTION, "val": VAL_FRACTION}, salt="celebdf")
        return records

    def _read_test_list(self, path: Path) -> dict[str, int]:
        listed: dict[str, int] = {}
        with open(path, encoding="utf-8", errors="replace") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                parts = line.split()
                if len(parts) != 2 or parts[0] not in LIST_LABEL:
                    raise DataError(f"{path}:{lineno}: expected '<1|0> <folder>/<file>.mp4', got {line.strip()!r}")
                relpath = parts[1].replace("\\", "/")
                folder = relpath.split("/", 1)[0]
                if folder not in FOLDERS:
                    raise DataError(f"{path}:{lineno}: unknown folder {folder!r}; expected one of {', '.join(FOLDERS)}")
                if LIST_LABEL[parts[0]] != FOLDERS[folder]:
                    raise DataError(f"{path}:{lineno}: label {parts[0]} contradicts folder {folder} "
                                    f"(in Celeb-DF 1 = real, 0 = fake); restore the original list")
                listed[relpath] = LIST_LABEL[parts[0]]
        return listed

    def _record(self, relpath: str, folder: str, label: int, split: str) -> VideoRecord:
        stem = Path(relpath).stem
        extra: dict = {"folder": folder}
        if folder == "Celeb-synthesis" and (m := FAKE_NAME.match(stem)):
            target, source, clip = m.groups()
            group = target
            extra.update(target=target, source=source, original=f"Celeb-real/{target}_{clip}.mp4")
        elif folder == "Celeb-real" and (m := REAL_NAME.match(stem)):
            group = m.group(1)
        else:
            group = f"{folder}_{stem}"  # YouTube-real: one unnamed person per video
        return VideoRecord(
            id=safe_id("celebdf", folder, stem), path=relpath, label=label,
            fake_type="real" if label == REAL else folder, split=split, dataset=self.name, group=group, extra=extra,
        )

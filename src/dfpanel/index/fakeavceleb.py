"""FakeAVCeleb v1.2 (Khalid et al., NeurIPS 2021 Datasets; github.com/DASH-Lab/FakeAVCeleb).

Tree::

    ROOT/meta_data.csv
    ROOT/RealVideo-RealAudio/<race>/<gender>/<idXXXXX>/00109.mp4
    ROOT/RealVideo-FakeAudio/...     ROOT/FakeVideo-RealAudio/...     ROOT/FakeVideo-FakeAudio/...
        e.g. FakeVideo-FakeAudio/African/men/id00076/00109_10_id00476_wavtolip.mp4

meta_data.csv has the header `source,target1,target2,method,category,type,race,gender,path,` - the
`path` column holds the *file name* and a tenth, unnamed column holds the folder, prefixed with
`FakeAVCeleb/`, e.g.::

    id00076,-,-,real,A,RealVideo-RealAudio,African,men,00109.mp4,FakeAVCeleb/RealVideo-RealAudio/African/men/id00076

Category A = RealVideo-RealAudio (real); B, C, D = the three fake categories. The same file can be
listed twice with different methods; it is indexed once with all its methods in `extra`. There is
no official split: identities (the idXXXXX folder, i.e. the person whose clip it is) are split
70/15/15 deterministically, so a person's real and fake clips share a split.
"""

from __future__ import annotations

import csv
from pathlib import Path

from dfpanel.errors import DataError
from dfpanel.index.base import IndexOptions, Layout, MissingVideos, register
from dfpanel.index.manifest import FAKE, REAL, VideoRecord, safe_id
from dfpanel.index.splits import assign_splits

CATEGORIES = ("RealVideo-RealAudio", "RealVideo-FakeAudio", "FakeVideo-RealAudio", "FakeVideo-FakeAudio")
REAL_CATEGORY = "RealVideo-RealAudio"
META = "meta_data.csv"
REQUIRED_COLUMNS = ("source", "method", "type", "path")
FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}


@register
class FakeAVCelebLayout(Layout):
    name = "fakeavceleb"
    markers = f"{META} and the folders {', '.join(c + '/' for c in CATEGORIES)}"

    def looks_like(self, root: Path) -> bool:
        return (root / META).is_file() or any((root / c).is_dir() for c in CATEGORIES)

    def index(self, root: Path, options: IndexOptions) -> list[VideoRecord]:
        meta_path = self.require(root / META, "the dataset's metadata file")
        prefix = self._tree_prefix(root)
        by_path: dict[str, VideoRecord] = {}
        missing = MissingVideos(self.name)
        for lineno, row in self._rows(meta_path):
            relpath = prefix + self._relpath(row, meta_path, lineno)
            if relpath in by_path:  # the same file listed again under another method
                methods = by_path[relpath].extra["methods"]
                if row["method"] not in methods:
                    methods.append(row["method"])
                continue
            if not (root / relpath).is_file():
                missing.add(relpath)
                continue
            by_path[relpath] = self._record(relpath, row)
        missing.warn()
        records = list(by_path.values())
        assign_splits(records, FRACTIONS, salt="fakeavceleb")
        return records

    def _tree_prefix(self, root: Path) -> str:
        """Folder holding the category folders, relative to root: usually root itself ("");
        "FakeAVCeleb/" in copies of the v1.2 archive that keep that level."""
        if any((root / c).is_dir() for c in CATEGORIES):
            return ""
        for sub in sorted(p for p in root.iterdir() if p.is_dir()):
            if any((sub / c).is_dir() for c in CATEGORIES):
                return f"{sub.name}/"
        self.require(root / CATEGORIES[0], "the category folders")
        return ""

    def _rows(self, meta_path: Path):
        try:
            with open(meta_path, newline="", encoding="utf-8-sig", errors="replace") as fh:
                reader = csv.reader(fh)
                header = [h.strip() for h in next(reader, [])]
                absent = [c for c in REQUIRED_COLUMNS if c not in header]
                if absent:
                    raise DataError(f"{meta_path}:1: header lacks column(s) {', '.join(absent)}; "
                                    f"expected source,target1,target2,method,category,type,race,gender,path,")
                named = header[: next((i for i, h in enumerate(header) if not h), len(header))]
                for cells in reader:
                    if not any(c.strip() for c in cells):
                        continue
                    if len(cells) < len(named):
                        raise DataError(f"{meta_path}:{reader.line_num}: {len(cells)} cells, expected at least {len(named)}")
                    row = {h: c.strip() for h, c in zip(named, cells)}
                    # the folder sits in the unnamed cell after the named columns (header ends "path,")
                    row["_folder"] = next((c.strip() for c in cells[len(named):] if c.strip()), "")
                    yield reader.line_num, row
        except csv.Error as exc:  # e.g. an unmatched quote running into the field size limit
            raise DataError(f"{meta_path}: not valid CSV ({exc}); restore the dataset's original file") from None

    def _relpath(self, row: dict, meta_path: Path, lineno: int) -> str:
        category = row["type"]
        if category not in CATEGORIES:
            raise DataError(f"{meta_path}:{lineno}: type {category!r} is not one of {', '.join(CATEGORIES)}")
        parts = [p for p in row["_folder"].replace("\\", "/").split("/") if p]
        if category in parts:  # drop the "FakeAVCeleb/" (or any) prefix before the category folder
            folder = parts[parts.index(category):]
        else:  # no folder column: rebuild it from the row
            folder = [category, row.get("race", ""), row.get("gender", ""), row["source"]]
        parts = [p for p in "/".join([*folder, row["path"]]).replace("\\", "/").split("/") if p and p != "."]
        if ".." in parts or ":" in parts[0]:
            raise DataError(f"{meta_path}:{lineno}: path {'/'.join(parts)!r} leaves the dataset folder; "
                            "restore the original file")
        return "/".join(parts)

    def _record(self, relpath: str, row: dict) -> VideoRecord:
        category = row["type"]
        label = REAL if category == REAL_CATEGORY else FAKE
        identity = relpath.split("/")[-2]
        stem = Path(relpath).stem
        return VideoRecord(
            id=safe_id("fakeavceleb", category, identity, stem), path=relpath, label=label,
            fake_type="real" if label == REAL else category, split="train", dataset=self.name,
            group=identity, has_audio=True,
            extra={"category": category, "letter": row.get("category", ""), "methods": [row["method"]],
                   "source": row["source"], "target1": row.get("target1", ""), "target2": row.get("target2", ""),
                   "race": row.get("race", ""), "gender": row.get("gender", "")},
        )

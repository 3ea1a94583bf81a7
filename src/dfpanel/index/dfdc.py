"""DFDC, the Deepfake Detection Challenge dataset (Dolhansky et al., 2020; Kaggle competition data).

Tree of the full training release (50 parts)::

    ROOT/dfdc_train_part_0/metadata.json
    ROOT/dfdc_train_part_0/aaqaifqrwn.mp4 ...
    ...
    ROOT/dfdc_train_part_49/...
    ROOT/test/labels.csv                    optional: the public test set, columns filename,label

metadata.json maps each file to its facts (Kaggle "Data" page, metadata columns filename / label /
original / split)::

    {"aaqaifqrwn.mp4": {"label": "FAKE", "split": "train", "original": "vudstovrck.mp4"},
     "vudstovrck.mp4": {"label": "REAL", "split": "train", "original": null}}

REAL entries carry `"original": null` or no `original` key at all; both are accepted. The Kaggle
sample (`train_sample_videos/metadata.json`, 400 videos) is read the same way, as a single part. DFDC has no
validation split: ~10% is carved out of train by original video (a fake goes with its original),
deterministically. `chunk` groups the parts present, in part-number order, into `--dfdc-chunks`
runs of consecutive parts (50 parts, 10 chunks -> parts 0-4 are chunk 0, 5-9 chunk 1, ...). The test
folder's labels may be 0/1 (1 = fake) or REAL/FAKE; its videos may sit next to labels.csv or in a
videos/ sub-folder.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from dfpanel.errors import DataError
from dfpanel.index.base import (
    IndexOptions,
    Layout,
    MissingVideos,
    files_in,
    load_json,
    register,
    stem,
)
from dfpanel.index.manifest import FAKE, REAL, VideoRecord, safe_id
from dfpanel.index.splits import assign_splits

PART_DIR = re.compile(r"^dfdc_train_part_(\d+)$")
KAGGLE_SAMPLE = "train_sample_videos"  # the competition's 400-video sample, same metadata.json format
TEST_DIRS = ("test", "dfdc_test", "test_videos")
LABELS = {"REAL": REAL, "FAKE": FAKE, "0": REAL, "1": FAKE}
VAL_FRACTION = 0.1


def part_dirs(root: Path) -> list[tuple[int, Path]]:
    """(part number, folder) in part order; the Kaggle sample counts as part 0 when it is alone."""
    found = []
    for p in root.iterdir():
        m = PART_DIR.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    if not found and (root / KAGGLE_SAMPLE / "metadata.json").is_file():
        found.append((0, root / KAGGLE_SAMPLE))
    return sorted(found)


def chunk_of_parts(parts: list[int], n_chunks: int) -> dict[int, int]:
    """Consecutive, near-equal runs of parts: part -> chunk (0-based)."""
    n = len(parts)
    k = max(1, min(n_chunks, n))
    return {part: i * k // n for i, part in enumerate(sorted(parts))}


@register
class DFDCLayout(Layout):
    name = "dfdc"
    markers = (f"dfdc_train_part_<N>/metadata.json folders or {KAGGLE_SAMPLE}/metadata.json "
               "(and optionally test/labels.csv)")

    def looks_like(self, root: Path) -> bool:
        return bool(part_dirs(root))

    def index(self, root: Path, options: IndexOptions) -> list[VideoRecord]:
        if options.dfdc_chunks < 1:
            raise DataError(f"--dfdc-chunks must be at least 1, got {options.dfdc_chunks}")
        parts = part_dirs(root)
        if not parts:
            self.require(root / "dfdc_train_part_0" / "metadata.json")
        chunks = chunk_of_parts([k for k, _ in parts], options.dfdc_chunks)
        missing = MissingVideos(self.name)
        records: list[VideoRecord] = []
        for part, folder in parts:
            records += self._part(root, part, folder, chunks[part], missing)

        pool = [r for r in records if r.split == "train"]
        assign_splits(pool, {"train": 1 - VAL_FRACTION, "val": VAL_FRACTION}, salt="dfdc")

        test_dir = next((root / d for d in TEST_DIRS if (root / d / "labels.csv").is_file()), None)
        if test_dir is not None:
            records += self._test(root, test_dir, missing)
        missing.warn()
        return records

    def _part(self, root: Path, part: int, folder: Path, chunk: int, missing: MissingVideos) -> list[VideoRecord]:
        meta_path = self.require(folder / "metadata.json", "every part ships one")
        meta = load_json(meta_path)
        if not isinstance(meta, dict):
            raise DataError(f"{meta_path}: expected a JSON object mapping file names to their labels")
        on_disk = files_in(folder)
        tag = "sample" if folder.name == KAGGLE_SAMPLE else f"part{part}"
        records = []
        for fname, facts in sorted(meta.items()):
            if not isinstance(facts, dict) or str(facts.get("label", "")).upper() not in ("REAL", "FAKE"):
                raise DataError(f"{meta_path}: entry {fname!r} needs \"label\": \"REAL\" or \"FAKE\", got {facts!r}")
            relpath = f"{folder.name}/{fname}"
            if fname not in on_disk:
                missing.add(relpath)
                continue
            label = LABELS[str(facts["label"]).upper()]
            original = facts.get("original")
            if original is not None and not isinstance(original, str):
                raise DataError(f"{meta_path}: entry {fname!r} has \"original\": {original!r}; expected a file name or null")
            original = original or None
            split = str(facts.get("split", "train"))
            if split not in ("train", "test"):
                raise DataError(f"{meta_path}: entry {fname!r} has split {split!r}; expected \"train\"")
            records.append(VideoRecord(
                id=safe_id("dfdc", tag, stem(fname)), path=relpath, label=label,
                fake_type="real" if label == REAL else "fake", split=split, dataset=self.name,
                group=stem(original) if (label == FAKE and original) else stem(fname),
                has_audio=True, chunk=chunk, extra={"part": part if tag != "sample" else None, "original": original},
            ))
        return records

    def _test(self, root: Path, test_dir: Path, missing: MissingVideos) -> list[VideoRecord]:
        labels_path = test_dir / "labels.csv"
        try:
            with open(labels_path, newline="", encoding="utf-8", errors="replace") as fh:
                reader = csv.DictReader(fh)
                if not reader.fieldnames or not {"filename", "label"} <= {f.strip() for f in reader.fieldnames}:
                    raise DataError(f"{labels_path}:1: expected the header 'filename,label', got {reader.fieldnames}")
                rows = []
                for row in reader:
                    row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
                    value = row["label"].upper()
                    if value.endswith(".0"):
                        value = value[:-2]
                    if value not in LABELS:
                        raise DataError(f"{labels_path}:{reader.line_num}: label {row['label']!r} is not 0/1 or REAL/FAKE")
                    rows.append((row["filename"], LABELS[value]))
        except csv.Error as exc:
            raise DataError(f"{labels_path}: not valid CSV ({exc}); restore the dataset's original file") from None
        here, nested = files_in(test_dir), files_in(test_dir / "videos")
        records = []
        for fname, label in rows:
            if fname in here:
                relpath = f"{test_dir.name}/{fname}"
            elif fname in nested:
                relpath = f"{test_dir.name}/videos/{fname}"
            else:
                missing.add(f"{test_dir.name}/{fname}")
                continue
            records.append(VideoRecord(
                id=safe_id("dfdc", "test", stem(fname)), path=relpath, label=label,
                fake_type="real" if label == REAL else "fake", split="test", dataset=self.name,
                group=stem(fname), has_audio=True, extra={"part": None, "original": None},
            ))
        return records

"""How long `index_dataset` takes on a DFDC-sized tree, against the bare cost of reading that tree.

Builds a DFDC layout of empty videos (parts x videos per part, with metadata.json per part; the
real release is 50 x ~2400 = ~119k videos), then times:

  baseline  os.walk over the tree + json.load of every metadata.json (the I/O any indexer must do)
  index     dfpanel.index.index_dataset(root, "dfdc")

and prints index time as a ratio of the baseline. Results go to benchmarks/results/index_scale.json.

    .venv/bin/python benchmarks/index_scale.py --parts 4 --per-part 500     # quick
    .venv/bin/python benchmarks/index_scale.py --parts 50 --per-part 2400   # full DFDC size
"""

from __future__ import annotations

import argparse
import json
import os
import random
import string
import tempfile
import time
from pathlib import Path


def build_tree(root: Path, parts: int, per_part: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    n = 0
    for k in range(parts):
        folder = root / f"dfdc_train_part_{k}"
        folder.mkdir(parents=True)
        meta, reals = {}, []
        for i in range(per_part):
            name = "".join(rng.choices(string.ascii_lowercase, k=10)) + ".mp4"
            if i % 6 == 0 or not reals:  # DFDC has about 1 real per 5 fakes
                meta[name] = {"label": "REAL", "split": "train", "original": None}
                reals.append(name)
            else:
                meta[name] = {"label": "FAKE", "split": "train", "original": rng.choice(reals)}
            (folder / name).touch()
            n += 1
        (folder / "metadata.json").write_text(json.dumps(meta))
    return n


def baseline(root: Path) -> int:
    files = 0
    for dirpath, _, filenames in os.walk(root):
        files += len(filenames)
        if "metadata.json" in filenames:
            with open(os.path.join(dirpath, "metadata.json")) as fh:
                json.load(fh)
    return files


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", type=int, default=10)
    ap.add_argument("--per-part", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "index_scale.json")
    args = ap.parse_args()

    from dfpanel.index import index_dataset

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "dfdc"
        n = build_tree(root, args.parts, args.per_part)
        rows = []
        t_base = best_of(lambda: baseline(root), args.repeats)
        t_index = best_of(lambda: rows.append(len(index_dataset(root, "dfdc"))), args.repeats)
        assert rows[-1] == n, (rows[-1], n)

    result = {
        "videos": n, "parts": args.parts, "repeats": args.repeats,
        "baseline_walk_and_json_s": round(t_base, 4), "index_dataset_s": round(t_index, 4),
        "index_over_baseline": round(t_index / t_base, 2),
        "index_videos_per_s": round(n / t_index),
    }
    print(f"{n} videos in {args.parts} parts")
    print(f"  baseline (walk + metadata.json): {t_base:.3f} s  = 1.00x")
    print(f"  index_dataset                  : {t_index:.3f} s  = {t_index / t_base:.2f}x  ({n / t_index:,.0f} videos/s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""`--resume-from DIR`: go on with a run that an earlier session wrote, from a read-only copy of it.

On Kaggle a notebook's output becomes the next session's input, mounted read-only under
/kaggle/input. The run folder found there (checkpoints, run.json, progress.json, finished stages'
weights and results, an unfinished DFDC chunk's cache) is copied into the writable --out and the run
resumes there; DIR is only read. Nothing is copied when --out already holds a run (a re-run in the
same session goes on with it). The copy is made under a temporary name and renamed into place, so a
session killed mid-copy leaves no half-copied run that would later look whole.

Stage and chunk folders find their files relative to themselves (`read_result`, `chunk_dir`), so the
paths recorded in their JSON files (where the earlier session wrote them) are never followed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from dfpanel.errors import DataError
from dfpanel.train.chunks import PROGRESS_FILE
from dfpanel.train.run import RESULT_FILE, RUN_FILE, last_checkpoint
from dfpanel.weights.fetch import WEIGHTS_FILE

log = logging.getLogger(__name__)


def holds_run(folder: Path) -> bool:
    """Does `folder` hold (the start of) a training run: run.json, progress.json, result.json or last.ckpt?"""
    folder = Path(folder)
    return any((folder / name).is_file() for name in (RUN_FILE, PROGRESS_FILE, RESULT_FILE)) or \
        last_checkpoint(folder).is_file()


def run_name(folder: Path) -> str | None:
    """The config name (`cm_ffpp`, `cm_tiny_dfdc`) of the run in `folder`, from its own records."""
    folder = Path(folder)
    for name in (RUN_FILE, PROGRESS_FILE):
        data = _read_json(folder / name)
        if name == RUN_FILE and data.get("config", {}).get("name"):
            return data["config"]["name"]
        if name == PROGRESS_FILE and data.get("name"):
            return data["name"]
    for chunk_run in sorted(folder.glob("chunk_*/" + RUN_FILE)):  # a progress.json from before it named its run
        name = _read_json(chunk_run).get("config", {}).get("name") or ""
        suffix = "_" + chunk_run.parent.name.replace("_", "")  # chunk_3 -> _chunk3
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def check_previous_run(src: Path, expected_name: str, option: str = "--resume-from") -> None:
    """DataError (one line) unless `src` holds a run of the config named `expected_name`, whole enough to go on."""
    src = Path(src)
    if not holds_run(src):
        raise DataError(f"{option} {src}: holds no dfpanel run (no {RUN_FILE}, {PROGRESS_FILE} or checkpoints/last.ckpt); "
                        "give the --out folder of the earlier session")
    name = run_name(src)
    if name is not None and name != expected_name:
        raise DataError(f"{option} {src}: holds a run of {name}, not of {expected_name}; give the run of this config")
    if (src / RESULT_FILE).is_file() and not (src / WEIGHTS_FILE).is_file():
        raise DataError(f"{option} {src}: the run finished ({RESULT_FILE}) but its {WEIGHTS_FILE} is missing; "
                        "the earlier session's output is incomplete")


def take_over(src: Path, dst: Path, option: str = "--resume-from") -> bool:
    """Copy the folder `src` (read only) to `dst`, unless `dst` already holds a run. True if copied."""
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise DataError(f"{option} {src}: is the --out folder itself; give the earlier session's copy, "
                        "or use --resume to go on in place")
    if dst.exists() and _holds_any_run(dst):
        log.warning("%s already holds a run: going on with it (%s %s not copied again)", dst, option, src)
        return False
    if dst.exists() and any(dst.iterdir()):
        raise DataError(f"{dst}: not empty and holds no run; {option} copies into an empty --out")
    tmp = dst.with_name(f".{dst.name}.copying")
    if tmp.exists():
        shutil.rmtree(tmp)  # a copy a killed session left half done
    n = copy_tree(src, tmp)
    if dst.exists():
        dst.rmdir()
    os.replace(tmp, dst)
    log.info("%s: copied %d files from %s", dst, n, src)
    return True


def copy_tree(src: Path, dst: Path) -> int:
    """Copy files and folders only (links skipped), as new writable files: the source's read-only
    permissions are not copied. Returns the number of files."""
    n = 0
    for root, dirs, files in os.walk(src):
        here = Path(root)
        target = dst / here.relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        dirs[:] = [d for d in dirs if not (here / d).is_symlink()]
        for name in files:
            if (here / name).is_symlink():
                continue
            shutil.copyfile(here / name, target / name)
            n += 1
    return n


def _holds_any_run(folder: Path) -> bool:
    if holds_run(folder):
        return True
    return any(holds_run(sub) for sub in folder.iterdir() if sub.is_dir())


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}

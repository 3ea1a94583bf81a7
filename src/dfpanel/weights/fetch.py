"""Resolve a stage's `init_from`: a local file, a previous run (name or folder), or an http(s) URL.

URLs are downloaded once into the cache folder (`~/.cache/dfpanel`, or `$DFPANEL_CACHE`) and reused.
When a sha256 is given, the file must match it or it is refused (`WeightsError`); a download that
does not match is deleted, so a corrected URL or sha can be fetched again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from dfpanel.errors import WeightsError
from dfpanel.weights.io import file_sha256 as sha256_of

WEIGHTS_FILE = "best.safetensors"


def cache_dir() -> Path:
    return Path(os.environ.get("DFPANEL_CACHE") or Path.home() / ".cache" / "dfpanel")


def is_url(spec: str) -> bool:
    return urllib.parse.urlparse(str(spec)).scheme in ("http", "https")


def resolve_init(
    spec: str, *, sha256: str | None = None, runs_root: str | os.PathLike | None = None, progress: bool = True
) -> Path:
    """The local weights file `spec` names, checked against `sha256` when given."""
    if is_url(spec):
        return download(spec, sha256=sha256, progress=progress)
    path = _local(spec, runs_root)
    if sha256 is not None:
        check_sha256(path, sha256)
    return path


def _local(spec: str, runs_root) -> Path:
    candidates = [Path(spec).expanduser()]
    if runs_root is not None:
        candidates.append(Path(runs_root) / spec)  # a previous run's name, next to this run
    for cand in candidates:
        if cand.is_file():
            return cand
        if cand.is_dir() and (cand / WEIGHTS_FILE).is_file():
            return cand / WEIGHTS_FILE
    raise WeightsError(
        f"{spec}: init_from is not a weights file, a run folder with {WEIGHTS_FILE}, a run name or a URL; "
        "train the previous stage first or fix init_from"
    )


def check_sha256(path: Path, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected.lower():
        raise WeightsError(
            f"{path}: sha256 is {actual[:12]}..., expected {expected.lower()[:12]}...; refusing to load "
            "(tampered or wrong file): fetch it again or fix init_sha256"
        )


def download(url: str, *, sha256: str | None = None, progress: bool = True) -> Path:
    """Download `url` once into the cache (a cached copy with the right sha256 is reused)."""
    name = Path(urllib.parse.urlparse(url).path).name
    if name in ("", ".", ".."):  # a URL ending in /.. must not name a folder above the cache
        name = "weights.safetensors"
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    target = cache_dir() / "weights" / key / name
    if target.is_file():
        if sha256 is None or sha256_of(target) == sha256.lower():
            return target
        target.unlink()  # stale or corrupt copy: fetch again
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(part, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            _copy_with_progress(resp, out, total, name, progress)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        part.unlink(missing_ok=True)
        raise WeightsError(f"{url}: download failed ({exc}); check the URL, or download it and give the local path") from None
    if sha256 is not None:
        try:
            check_sha256(part, sha256)
        except WeightsError:
            actual = sha256_of(part)
            part.unlink(missing_ok=True)
            raise WeightsError(
                f"{url}: downloaded file's sha256 is {actual[:12]}..., expected {sha256.lower()[:12]}...; "
                "refusing to load it (tampered or wrong file): check the URL and init_sha256"
            ) from None
    os.replace(part, target)
    return target


def _copy_with_progress(src, dst, total: int | None, label: str, progress: bool) -> None:
    if not progress:
        shutil.copyfileobj(src, dst, 1 << 20)
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn()) as bar:
        task = bar.add_task(f"download {label}", total=total)
        for block in iter(lambda: src.read(1 << 20), b""):
            dst.write(block)
            bar.advance(task, len(block))

"""Sharded face-track caches: the cache packed into WebDataset tar shards, to stream from local disk or
object storage (`dfpanel cache pack`; training reads them through `dfpanel.views.stream`).

Layout:

    SHARDS/
      shards.json            what each shard holds: file, size, sha256, video count and the videos' index
                             rows, so a reader plans an epoch without opening a tar
      input_spec.json        the source cache's InputSpec (training checks and records it as for a cache)
      shard-000000.tar ...   POSIX (pax) tar files, one WebDataset sample per cached video

Inside a shard a video is a run of adjacent members named `<key>.<ext>`, the WebDataset convention
(`webdataset.TarWriter` writes them; any WebDataset reader groups them into one sample per video):

    key   <dataset>/<video_id>, each part percent-encoded so that it holds no "." ("ffpp/000_003")
    ext   a file's path inside the entry folder, percent-encoded so that it holds no "/"
          ("meta.json", "audio.wav", "crops%2F000000.png"); a leading "_" is encoded too, so
    _row.json, the video's cache index row, never meets an entry file.

Nothing here knows which files an entry holds: every file of the folder travels as it is, and a video
read back is a `ShardEntry` whose `read_bytes(rel)` gives the very bytes the folder held. Rows are packed
in (split, chunk, dataset, id) order, so a split or a DFDC chunk reads few shards. A shard closes when
the next video would take it past the size limit (tar headers and end padding counted exactly); a video
larger than the limit on its own gets a shard of its own.

Packing is resumable: each shard is written under a temporary name and renamed when complete, and
`.pack-progress.jsonl` records it; a re-run reuses every shard whose videos and files (paths, sizes,
modification times) are unchanged, and writes shards.json last.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import string
import tarfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote

from dfpanel.atomic import atomic_write
from dfpanel.errors import ConfigError, DataError
from dfpanel.extract.cache import (
    CacheIndexRow,
    FaceTrackCache,
    FaceTrackEntry,
    read_cache_spec,
)
from dfpanel.extract.spec import SPEC_FILE, InputSpec

log = logging.getLogger(__name__)

SHARDS_FILE = "shards.json"
SHARDS_FORMAT = "dfpanel-shards"
SHARDS_VERSION = 1
SHARD_NAME = "shard-{:06d}.tar"
ROW_EXT = "_row.json"
PROGRESS_FILE = ".pack-progress.jsonl"
MIN_SHARD_SIZE = tarfile.RECORDSIZE  # 10 KB: a tar file is a whole number of 10240-byte records

_SHARD_RE = re.compile(r"^shard-\d{6}\.tar$")
_TMP_RE = re.compile(r"^\.shard-\d{6}\.tar\..*\.tmp$")
# Tar member fields, fixed so that packing the same cache twice gives byte-identical shards.
_OWNER, _MODE, _MTIME = "dfpanel", 0o444, 0
_SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}

# -- sizes -----------------------------------------------------------------------------------------

_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip


def parse_size(text: str | int, option: str = "--shard-size") -> int:
    """Bytes in a size such as 500MB, 1GB, 64KB, 1.5GB (powers of 1000) or 512MiB (of 1024); a bare
    number is bytes. A one-line ConfigError for anything else, or for less than one tar record."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*", str(text))
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS:
        raise ConfigError(f"{option} {text!r}: not a size; write it like 500MB, 1GB or 64KB (KiB, MiB, GiB for powers of 1024)")
    n = int(float(m.group(1)) * _UNITS[unit])
    if n < MIN_SHARD_SIZE:
        raise ConfigError(f"{option} {text!r}: too small; a shard holds at least one 10KB tar record")
    return n


def format_size(n: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


# -- member names ----------------------------------------------------------------------------------

_KEEP = frozenset(string.ascii_letters + string.digits + "-_")
_KEEP_EXT = _KEEP | {"."}


def _quote(text: str, keep: frozenset) -> str:
    out = []
    for i, ch in enumerate(text):
        if ch in keep and not (i == 0 and ch == "_"):
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape"))
    return "".join(out)


def sample_key(dataset: str, video_id: str) -> str:
    """The WebDataset key of a cached video: `<dataset>/<video_id>`, each part percent-encoded so that
    it holds no "." (WebDataset splits a member name at the first dot of its last part)."""
    return f"{_quote(dataset, _KEEP) or '_'}/{_quote(video_id, _KEEP) or '_'}"


def member_ext(rel: str) -> str:
    """The extension that names an entry file in a shard: its entry-relative path, percent-encoded so
    that it holds no "/" and starts with no "_" (those are the sample's own members: `_row.json`)."""
    return _quote(rel, _KEEP_EXT)


def rel_of_ext(ext: str) -> str:
    """The entry-relative path an extension stands for (the inverse of `member_ext`)."""
    return unquote(ext, errors="surrogateescape")


def _member_bytes(name: str, size: int) -> int:
    """Bytes one member takes in a tar that TarWriter writes: its header(s) (pax for long or non-ASCII
    names) + the data padded to 512-byte blocks."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uname, info.gname = size, _MTIME, _MODE, _OWNER, _OWNER
    header = len(info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape"))
    return header + -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def _archive_bytes(members: int) -> int:
    """File size of a tar whose members take `members` bytes: + the two zero end blocks, padded to
    whole 10240-byte records."""
    n = members + 2 * tarfile.BLOCKSIZE
    return -(-n // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


# -- packing ---------------------------------------------------------------------------------------


def entry_files(folder: Path) -> list[tuple[str, Path]]:
    """Every regular file under an entry folder as (path relative to it with "/", path), sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_file():
                out.append((path.relative_to(folder).as_posix(), path))
    return sorted(out)


@dataclass
class _Video:
    row: CacheIndexRow
    key: str
    files: list[tuple[str, Path]]
    row_json: bytes
    nbytes: int  # its members' bytes in a shard
    stamp: list  # (rel, size, mtime_ns) per file: a changed entry is packed again on resume
    clip_frames: list[int] | None = None


def _row_record(row: CacheIndexRow, key: str, clip_frames: list[int] | None) -> dict:
    rec = {**asdict(row), "key": key}
    if clip_frames is not None:
        rec["clip_frames"] = clip_frames
    return rec


def _clip_frames(folder: Path, row: CacheIndexRow) -> list[int] | None:
    """Frames per clip, in clip order, of a video whose index counts do not divide (a cache not written
    by `dfpanel extract`): the one case where counting its samples needs more than the index row."""
    if row.n_clips <= 0 or row.n_frames % row.n_clips == 0:
        return None
    sizes: dict[int, int] = {}
    for f in FaceTrackEntry(folder).meta.frames:
        sizes[f.clip] = sizes.get(f.clip, 0) + 1
    return [sizes[c] for c in sorted(sizes)]


def _video(root: Path, row: CacheIndexRow) -> _Video | None:
    folder = root / row.dir
    files = entry_files(folder) if folder.is_dir() else []
    if not any(rel == "meta.json" for rel, _ in files):
        return None
    key = sample_key(row.dataset, row.id)
    clip_frames = _clip_frames(folder, row)
    row_json = (json.dumps(_row_record(row, key, clip_frames), sort_keys=True) + "\n").encode()
    stats = [(rel, path.stat()) for rel, path in files]
    nbytes = _member_bytes(f"{key}.{ROW_EXT}", len(row_json)) + sum(
        _member_bytes(f"{key}.{member_ext(rel)}", st.st_size) for rel, st in stats)
    stamp = [[rel, st.st_size, st.st_mtime_ns] for rel, st in stats]
    return _Video(row, key, files, row_json, nbytes, stamp, clip_frames)


def plan_shards(videos: Sequence[_Video], limit: int) -> list[list[_Video]]:
    """Videos in order into shards: a shard closes when the next video would take its file past `limit`."""
    shards: list[list[_Video]] = []
    cur: list[_Video] = []
    used = 0
    for v in videos:
        if cur and _archive_bytes(used + v.nbytes) > limit:
            shards.append(cur)
            cur, used = [], 0
        cur.append(v)
        used += v.nbytes
    if cur:
        shards.append(cur)
    return shards


def _digest(videos: Sequence[_Video]) -> str:
    h = hashlib.sha256()
    for v in videos:
        h.update(v.row_json)
        h.update(json.dumps(v.stamp).encode())
    return h.hexdigest()


class _HashingWriter:
    def __init__(self, fh):
        self.fh, self.sha, self.size = fh, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.fh.write(data)


def _write_shard(out: Path, name: str, videos: Sequence[_Video]) -> dict:
    """One shard, written under a temporary name and renamed once complete; its record."""
    import webdataset as wds

    tmp = out / f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "wb") as raw:
            fh = _HashingWriter(raw)
            with wds.TarWriter(fh, user=_OWNER, group=_OWNER, mode=_MODE, encoder=False, keep_meta=True, mtime=_MTIME) as tw:
                for v in videos:
                    sample = {"__key__": v.key, ROW_EXT: v.row_json}
                    for rel, path in v.files:
                        sample[member_ext(rel)] = path.read_bytes()
                    tw.write(sample)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, out / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {"file": name, "size": fh.size, "sha256": fh.sha.hexdigest(), "n_videos": len(videos)}


def _pack_order(row: CacheIndexRow):
    return (_SPLIT_ORDER.get(row.split, len(_SPLIT_ORDER)), row.split, -1 if row.chunk is None else row.chunk,
            row.dataset, row.id)


def _finished(out: Path) -> dict[str, dict]:
    """Shards a previous pack into `out` finished: file -> record (with its digest)."""
    done: dict[str, dict] = {}
    try:
        for rec in json.loads((out / SHARDS_FILE).read_text(encoding="utf-8")).get("shards", []):
            done[rec["file"]] = rec
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        pass
    try:
        for line in (out / PROGRESS_FILE).read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
                done[rec["file"]] = rec
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a kill
    except OSError:
        pass
    return done


def pack_cache(
    cache_root: str | os.PathLike,
    out: str | os.PathLike,
    shard_size: int,
    *,
    splits: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    on_shard: Callable[[int, int, dict, bool], None] | None = None,
) -> dict:
    """Pack the cache's videos (optionally only these splits / datasets) into WebDataset shards of at
    most `shard_size` bytes in `out`, with shards.json and input_spec.json. Re-running resumes: shards
    whose content would not change are kept. `on_shard(i, n, record, reused)` follows progress."""
    cache = FaceTrackCache(cache_root)
    out = Path(out)
    if out.resolve() == cache.root.resolve():
        raise ConfigError(f"--out {out}: the shards need a folder of their own, not the cache itself")
    spec = read_cache_spec(cache.root)  # a cache from before specs were recorded: the legacy one, with a warning
    rows = [r for r in cache.rows()
            if (splits is None or r.split in splits) and (datasets is None or r.dataset in datasets)]
    if not rows:
        what = " and ".join(f"{k} {','.join(v)}" for k, v in (("split", splits), ("dataset", datasets)) if v)
        raise DataError(f"{cache.root}: no videos to pack{' of ' + what if what else ''}")
    rows.sort(key=_pack_order)
    videos, missing = [], []
    for row in rows:
        v = _video(cache.root, row)
        (videos if v is not None else missing).append(v or row)
    if missing:
        log.warning("%s: %d video(s) in the index have no entry on disk (first: %s); packing the other %d",
                    cache.root, len(missing), missing[0].dir, len(videos))
    if not videos:
        raise DataError(f"{cache.root}: none of the {len(rows)} videos to pack has its entry on disk; re-extract them")
    out.mkdir(parents=True, exist_ok=True)
    for p in out.iterdir():  # temporary shards of a killed pack
        if _TMP_RE.match(p.name):
            p.unlink(missing_ok=True)
    plan = plan_shards(videos, shard_size)
    done = _finished(out)
    records, reused, index_removed, oversize = [], 0, False, []
    for i, group in enumerate(plan):
        name, digest = SHARD_NAME.format(i), _digest(group)
        rec = done.get(name)
        path = out / name
        if rec is not None and rec.get("digest") == digest and path.is_file() and path.stat().st_size == rec.get("size"):
            rec = {k: rec[k] for k in ("file", "size", "sha256", "n_videos", "digest")}
            reused += 1
            was_reused = True
        else:
            if not index_removed:  # the set changes: no reader may trust the old index meanwhile
                (out / SHARDS_FILE).unlink(missing_ok=True)
                index_removed = True
            rec = {**_write_shard(out, name, group), "digest": digest}
            with open(out / PROGRESS_FILE, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec) + "\n")
            was_reused = False
        if rec["size"] > shard_size:
            oversize.append(group[0].row.dir)
        records.append({**rec, "rows": [_row_record(v.row, v.key, v.clip_frames) for v in group]})
        if on_shard is not None:
            on_shard(i, len(plan), rec, was_reused)
    if oversize:
        log.warning("%s: %d video(s) alone take more than the shard size %s (first: %s); each has a shard of its own",
                    cache.root, len(oversize), format_size(shard_size), oversize[0])
    for p in out.iterdir():  # shards of an earlier, larger pack into the same folder
        if _SHARD_RE.match(p.name) and int(p.name[6:12]) >= len(plan):
            p.unlink()
    spec_path = cache.root / SPEC_FILE
    spec_text = spec_path.read_text(encoding="utf-8") if spec_path.is_file() else json.dumps(spec.to_dict(), indent=1) + "\n"
    atomic_write(out / SPEC_FILE, spec_text)
    total = sum(r["size"] for r in records)
    index = {
        "format": SHARDS_FORMAT,
        "version": SHARDS_VERSION,
        "source": str(cache.root.resolve()),
        "shard_size": int(shard_size),
        "selection": {"splits": list(splits) if splits else None, "datasets": list(datasets) if datasets else None},
        "naming": "WebDataset: <key>.<ext>; key = <dataset>/<video_id> percent-encoded (no '.'); ext = the "
                  "file's path in the entry folder percent-encoded (no '/'); <key>._row.json = its index row",
        "input_spec": SPEC_FILE,
        "n_shards": len(records),
        "n_videos": len(videos),
        "total_bytes": total,
        "shards": records,
    }
    atomic_write(out / SHARDS_FILE, json.dumps(index, indent=1) + "\n")
    (out / PROGRESS_FILE).unlink(missing_ok=True)
    return {"out": str(out), "shards": len(records), "reused": reused, "written": len(records) - reused,
            "videos": len(videos), "missing": len(missing), "bytes": total}


# -- reading ---------------------------------------------------------------------------------------


def _has_scheme(location: str) -> bool:
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", location) is not None


def is_shard_set(location: str | os.PathLike) -> bool:
    """True for a URL (file://, http(s)://, s3://...) or a local folder holding shards.json (or that
    file itself): where `--data` means shards rather than a cache folder."""
    text = str(location)
    if _has_scheme(text) and not text.startswith("file://"):
        return True
    path = Path(text[len("file://"):] if text.startswith("file://") else text)
    return (path.is_dir() and (path / SHARDS_FILE).is_file()) or (path.name == SHARDS_FILE and path.is_file())


def _open(url: str):
    import fsspec

    return fsspec.open(url, "rb").open()


def _read_all(url: str) -> bytes:
    with _open(url) as fh:
        return fh.read()


def _why(exc: BaseException) -> str:
    text = str(exc).split(" @ ")[0].strip().splitlines()  # webdataset appends " @ <stream>" to messages
    return f"{type(exc).__name__}: {text[0]}" if text and text[0] else type(exc).__name__


def _unreachable(exc: FileNotFoundError) -> bool:
    """fsspec's http raises FileNotFoundError for a server it cannot reach too: tell that from a 404."""
    cause = exc.__cause__
    return cause is not None and getattr(cause, "status", None) not in (404, 410)


@dataclass
class ShardInfo:
    index: int
    file: str
    url: str
    size: int
    sha256: str
    n_videos: int
    keys: list[str] = field(default_factory=list)


class ClipLayout:
    """Stands in for an entry where only its clips' lengths count (`views.samples.sample_count`):
    `meta.frames[i].clip`, from the `clip_frames` shards.json keeps for such videos."""

    def __init__(self, clip_frames: Sequence[int]):
        self.meta = SimpleNamespace(frames=[SimpleNamespace(clip=c) for c, n in enumerate(clip_frames) for _ in range(n)])


class ShardEntry(FaceTrackEntry):
    """A cached video read from a shard: its files in memory, read through `read_bytes` exactly as the
    entry folder's files are, so every view of it equals the view of the folder."""

    def __init__(self, files: dict[str, bytes], name: str | os.PathLike):
        self._files = files
        super().__init__(name)

    def read_bytes(self, rel: str) -> bytes:
        try:
            return self._files[rel]
        except KeyError:
            raise FileNotFoundError(f"{self.folder / rel}: not in the shard") from None


class _HashingReader:
    def __init__(self, fh):
        self.fh, self.sha, self.size = fh, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.sha.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


class ShardSet:
    """Read side of a shard folder or URL: its index (shards.json), rows and InputSpec, and its shards
    read in sequence, each checked against its recorded size, sha256 and videos when read whole.

    `location`: a local folder, a URL of one (file://, http(s)://, s3://... through fsspec), or the
    shards.json in it. Picklable (plain data), so DataLoader workers get their own copy."""

    def __init__(self, location: str | os.PathLike):
        self.location = str(location)
        text = self.location.rstrip("/")
        base = text[: -len(SHARDS_FILE) - 1] if text.endswith("/" + SHARDS_FILE) or text == SHARDS_FILE else text
        self.base = base or "."
        self.local = not _has_scheme(self.base)
        index_url = self.url(SHARDS_FILE)
        try:
            raw = _read_all(index_url)
        except FileNotFoundError as exc:
            if _unreachable(exc):
                raise DataError(f"{index_url}: cannot read the shard index ({_why(exc.__cause__)})") from None
            raise DataError(f"{self.location}: not a shard set (no {SHARDS_FILE}); make one with "
                            f"`dfpanel cache pack CACHE --out DIR`") from None
        except Exception as exc:  # noqa: BLE001 - fsspec backends raise their own kinds (aiohttp, botocore, ImportError)
            raise DataError(f"{index_url}: cannot read the shard index ({_why(exc)})") from None
        try:
            index = json.loads(raw)
            if index.get("format") != SHARDS_FORMAT:
                raise ValueError(f"format is {index.get('format')!r}, not {SHARDS_FORMAT!r}")
            if int(index.get("version", 0)) > SHARDS_VERSION:
                raise ValueError(f"version {index['version']} is newer than this dfpanel reads ({SHARDS_VERSION})")
            self.shards: list[ShardInfo] = []
            self._rows: list[CacheIndexRow] = []
            self._shard_of: dict[str, int] = {}
            self._clip_frames: dict[tuple[str, str], list[int]] = {}
            for i, rec in enumerate(index["shards"]):
                info = ShardInfo(i, rec["file"], self.url(rec["file"]), int(rec["size"]), rec["sha256"], int(rec["n_videos"]))
                for r in rec["rows"]:
                    r = dict(r)
                    key = r.pop("key")
                    clip_frames = r.pop("clip_frames", None)
                    row = CacheIndexRow(**{k: v for k, v in r.items() if k in CacheIndexRow.__dataclass_fields__})
                    info.keys.append(key)
                    self._rows.append(row)
                    self._shard_of[key] = i
                    if clip_frames is not None:
                        self._clip_frames[(row.dataset, row.id)] = list(clip_frames)
                self.shards.append(info)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"{index_url}: unreadable shard index ({_why(exc)}); pack the shards again") from None
        self.n_videos = len(self._rows)

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def rows(self) -> list[CacheIndexRow]:
        """Index rows of every video in the set (a video packed twice keeps its last row)."""
        return list({(r.dataset, r.id): r for r in self._rows}.values())

    def key_of(self, row: CacheIndexRow) -> str:
        return sample_key(row.dataset, row.id)

    def shard_of(self, row: CacheIndexRow) -> int | None:
        """Index (in `shards`) of the shard holding a row's video; None when none does."""
        return self._shard_of.get(self.key_of(row))

    @property
    def input_spec(self) -> InputSpec:
        url = self.url(SPEC_FILE)
        try:
            return InputSpec.from_dict(json.loads(_read_all(url)), source=url)
        except FileNotFoundError:
            raise DataError(f"{url}: the shard set has no input spec; pack it again from its cache") from None
        except ValueError as exc:
            raise DataError(f"{url}: unreadable input spec ({_why(exc)}); pack the shards again") from None

    def layout(self, row: CacheIndexRow) -> ClipLayout:
        """`open_entry` for counting samples (views.samples): only a video whose index counts do not
        divide is ever asked for, and shards.json keeps its clip lengths."""
        frames = self._clip_frames.get((row.dataset, row.id))
        if frames is None:
            raise DataError(f"{self.location}: shards.json gives no clip lengths for {row.dataset}/{row.id}; pack it again")
        return ClipLayout(frames)

    def read(self, shard: ShardInfo, *, verify: bool = True) -> Iterator[tuple[str, dict[str, bytes]]]:
        """(key, {entry-relative path: bytes}) per video of a shard, in order. Read whole with `verify`,
        its size, sha256 and videos must be those shards.json records. Any fault is a one-line
        DataError naming the shard."""
        from webdataset.tariterators import (
            base_plus_ext,
            group_by_keys,
            tar_file_iterator,
        )

        seen, last = 0, None
        try:
            with _open(shard.url) as raw:
                stream = _HashingReader(raw)
                members = ({**m, "__url__": shard.url} for m in tar_file_iterator(stream))
                for sample in group_by_keys(members, keys=base_plus_ext, lcase=False):
                    # A video is whole once the next one starts; the last one once the shard checks out
                    # (a shard cut between two members ends like a whole one, one file short).
                    if last is not None:
                        yield last
                    files = {rel_of_ext(ext): data for ext, data in sample.items() if not ext.startswith("_")}
                    last = (sample["__key__"], files)
                    seen += 1
                if verify:
                    stream.drain()
                    if stream.size != shard.size:
                        raise DataError(f"{shard.url}: truncated or altered shard ({stream.size} bytes, shards.json "
                                        f"records {shard.size}); pack it again or fetch it again")
                    if stream.sha.hexdigest() != shard.sha256:
                        raise DataError(f"{shard.url}: corrupt shard (sha256 {stream.sha.hexdigest()[:12]}..., "
                                        f"shards.json records {shard.sha256[:12]}...); pack it again or fetch it again")
                    if seen != shard.n_videos:
                        raise DataError(f"{shard.url}: holds {seen} videos, shards.json records {shard.n_videos}; pack it again")
                if last is not None:
                    yield last
        except DataError:
            raise
        except FileNotFoundError as exc:
            if _unreachable(exc):
                raise DataError(f"{shard.url}: cannot read the shard ({_why(exc.__cause__)})") from None
            raise DataError(f"{shard.url}: shard missing; pack the shards again or fetch it again") from None
        except Exception as exc:  # noqa: BLE001 - tarfile, fsspec backends and webdataset raise many kinds
            raise DataError(f"{shard.url}: unreadable shard, truncated or corrupt ({_why(exc)}); pack it again "
                            f"or fetch it again") from None

    def entry(self, shard: ShardInfo, key: str, files: dict[str, bytes]) -> ShardEntry:
        """A video read from `shard`, named `<shard>/<key>` in messages."""
        where = Path(shard.url) if self.local else Path(shard.file)
        return ShardEntry(files, where / key)

    def __repr__(self) -> str:
        return f"ShardSet({self.location!r}: {len(self.shards)} shards, {self.n_videos} videos)"

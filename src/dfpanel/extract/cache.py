"""The face-track cache: what `dfpanel extract` writes and every specialist's view reads.

Layout (one folder per video, written atomically: built in a temp folder, then renamed):

    CACHE/
      index.jsonl                 one line per finished video (CacheIndexRow), appended as videos finish
      input_spec.json             the InputSpec every entry was extracted with (dfpanel.extract.spec)
      extract_report.json         per-video failures with reasons, and run totals
      <dataset>/<video_id>/
        meta.json                 TrackMeta (below)
        face/000000.webp ...      store "compact" (the default, dfpanel.extract.compact): the face
        context/000000.webp ...   (face_span x its box, the face at most face_px) and the context box
        native/000000.webp ...    (2x the face box, the face at most context_px), WebP; and the
                                  native_size window round the face on the 8x8 grid, lossless
        crops/000000.png ...      store "full" (caches before compact storage): lossless RGB crops of the
                                  context box at native resolution
        audio.wav                 16 kHz mono PCM16, when the video has audio (exactly the samples
                                  extract_video returns: normalised once, at extraction)

Coordinates are source-frame pixels after rotation metadata was applied. `crop_box` is integral and
clipped to the frame, so `crop_box[:2] % 8` is where the source frame's 8x8 block grid falls inside
the crop (CM needs that). Frames come in clips of `clip_len` consecutive decoded frames; a frame's
`clip` says which. `time` is its presentation timestamp in seconds; audio sample `i` is at time
`audio.start_time + i / sample_rate`, on the same clock.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
import wave
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from dfpanel.errors import ConfigError, DataError, DfpanelError
from dfpanel.extract.compact import covers, decode_image, pack_track
from dfpanel.extract.spec import LEGACY_SPEC, SPEC_FILE, InputSpec, check_same_views

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # TrackMeta.version of a "full" entry; compact entries are COMPACT_VERSION (2)
AUDIO_RATE = 16000
INDEX_FILE = "index.jsonl"
REPORT_FILE = "extract_report.json"


@dataclass
class FrameRecord:
    index: int  # decoded frame number in the video (0-based, in presentation order)
    time: float  # presentation time, seconds
    clip: int  # which clip of clip_len consecutive frames it belongs to
    box: list[float]  # face box [x0, y0, x1, y1], source pixels
    crop_box: list[int]  # stored crop [x0, y0, x1, y1], integral, clipped to the frame
    landmarks: list[list[float]]  # 5 x [x, y]: left eye, right eye, nose, mouth left, mouth right
    score: float  # detector confidence (interpolated frames: of the nearest detection)
    file: str  # context crop image, relative to the entry folder
    detected: bool = True  # False when the box was tracked/interpolated rather than detected
    scale: float = 1.0  # context crop pixels per source pixel (compact storage shrinks large faces)
    native_box: list[int] | None = None  # source box of the stored native pixels (compact), else None
    native_file: str | None = None  # their lossless image (compact); None: the crop is native (full)
    face_box: list[int] | None = None  # source box of the face layer (compact), else None
    face_file: str | None = None  # its image (compact), `face_scale` px per source px
    face_scale: float = 1.0


@dataclass
class AudioInfo:
    file: str
    sample_rate: int
    start_time: float  # time of sample 0 on the frames' clock, seconds
    n_samples: int


@dataclass
class TrackMeta:
    video_id: str
    dataset: str
    source: str  # absolute path of the video it came from
    source_size: list[int]  # [width, height] after rotation
    fps: float  # average frame rate
    duration: float  # seconds
    codec: str
    rotation: int  # degrees applied
    clip_len: int
    frames: list[FrameRecord]
    audio: AudioInfo | None
    track_id: int = 0
    detector: str = ""
    version: int = CACHE_VERSION
    extra: dict = field(default_factory=dict)
    input_spec: dict | None = None  # InputSpec.to_dict() it was extracted with (None: before specs were recorded)

    @property
    def grid_offset(self) -> list[tuple[int, int]]:
        """Per frame, (x, y) of the source 8x8 block grid inside the crop: the crop starts at
        crop_box[0] % 8 pixels into a block, so the first full block starts (8 - that) % 8 in."""
        return [((8 - f.crop_box[0] % 8) % 8, (8 - f.crop_box[1] % 8) % 8) for f in self.frames]

    def to_json(self) -> str:
        # One frame per line: readable enough, and 40% fewer bytes than indented (it counts per frame).
        d = asdict(self)
        frames = d.pop("frames")
        head = json.dumps(d, separators=(",", ":"))
        body = ",\n".join(json.dumps(f, separators=(",", ":")) for f in frames)
        return head[:-1] + ',"frames":[\n' + body + "\n]}"

    @classmethod
    def from_dict(cls, d: dict) -> "TrackMeta":
        d = dict(d)
        d["frames"] = [FrameRecord(**f) for f in d["frames"]]
        d["audio"] = AudioInfo(**d["audio"]) if d.get("audio") else None
        return cls(**d)


@dataclass
class CacheIndexRow:
    id: str
    dataset: str
    dir: str  # entry folder relative to the cache root
    label: int
    fake_type: str
    split: str
    group: str
    has_audio: bool
    chunk: int | None
    n_frames: int
    n_clips: int
    manipulations: list[str] = field(default_factory=list)
    # From the manifest row: True when `dfpanel synth` made the video, False when not. None = unknown:
    # a cache extracted before dfpanel recorded it (or from a manifest that did not say). Unknown, not
    # False, because an old demo cache holds synthetic videos and must not pass for real data.
    synthetic: bool | None = None


class FaceTrackEntry:
    """One video's cached face track. Crops load lazily and are cached in memory per entry."""

    def __init__(self, folder: str | os.PathLike, meta: TrackMeta | None = None):
        self.folder = Path(folder)
        if meta is None:
            meta_path = self.folder / "meta.json"
            try:
                meta = TrackMeta.from_dict(json.loads(self.read_bytes("meta.json")))
            except FileNotFoundError:
                raise DataError(f"{meta_path}: cache entry has no meta.json; re-run `dfpanel extract`") from None
            except (json.JSONDecodeError, TypeError, KeyError) as exc:
                raise DataError(f"{meta_path}: unreadable cache metadata ({exc}); delete the folder and re-extract") from None
        self.meta = meta
        self._crops: list[np.ndarray] | None = None

    @classmethod
    def from_memory(cls, meta: TrackMeta, crops: list[np.ndarray], audio: np.ndarray | None = None) -> "FaceTrackEntry":
        """An entry held in memory (detection analyses a video without writing a cache)."""
        entry = cls(folder=".", meta=meta)
        entry._crops = list(crops)
        entry.__dict__["audio"] = audio if meta.audio is not None else None
        return entry

    def read_bytes(self, rel: str) -> bytes:
        """The bytes of one of the entry's files (`meta.json`, a crop, the audio), by its path relative
        to the entry folder. Every read goes through here, so an entry held elsewhere (a tar shard, an
        archive in memory) only overrides this. FileNotFoundError when it has no such file."""
        return (self.folder / rel).read_bytes()

    def __len__(self) -> int:
        return len(self.meta.frames)

    @property
    def has_audio(self) -> bool:
        return self.meta.audio is not None

    def crop(self, i: int) -> np.ndarray:
        """RGB uint8 HxWx3 context crop of frame position i (position in meta.frames, not video frame
        index): the source box `crop_box`, at `scale` crop pixels per source pixel."""
        if self._crops is not None:
            return self._crops[i]
        return self._image(self.meta.frames[i].file)

    def native(self, i: int) -> tuple[np.ndarray, tuple[int, int]]:
        """Native (never resampled) pixels round the face of position i and their source-pixel origin:
        the stored native window of a compact entry, the whole crop of a full one."""
        f = self.meta.frames[i]
        if f.native_file is None:
            if f.scale != 1.0:
                raise DataError(f"{self.folder}: frame {i} has no native pixels stored; re-extract it")
            return self.crop(i), (int(f.crop_box[0]), int(f.crop_box[1]))
        return self._image(f.native_file), (int(f.native_box[0]), int(f.native_box[1]))

    def face(self, i: int) -> tuple[np.ndarray, tuple[int, int]] | None:
        """The face layer of a compact entry (image, source origin), None when it has none."""
        f = self.meta.frames[i]
        if f.face_file is None:
            return None
        return self._image(f.face_file), (int(f.face_box[0]), int(f.face_box[1]))

    def region(self, i: int, want) -> tuple[np.ndarray, tuple[int, int], float]:
        """(image, its source-pixel origin, its px per source px) to cut the source box `want` of
        position i from: the face layer when it covers it (compact.covers), else the context crop."""
        f = self.meta.frames[i]
        if f.face_box is not None and covers(f.face_box, f.crop_box, want):
            face = self.face(i)
            if face is not None:
                return face[0], face[1], float(f.face_scale)
        return self.crop(i), (int(f.crop_box[0]), int(f.crop_box[1])), float(f.scale)

    def _image(self, rel: str) -> np.ndarray:
        path = self.folder / rel
        try:
            data = self.read_bytes(rel)
        except OSError as exc:
            raise DataError(f"{path}: unreadable crop ({exc.strerror or exc}); delete {self.folder} and re-extract") from None
        return decode_image(data, name=str(path))

    def clips(self) -> dict[int, list[int]]:
        """clip number -> positions of its frames, in time order."""
        out: dict[int, list[int]] = {}
        for pos, f in enumerate(self.meta.frames):
            out.setdefault(f.clip, []).append(pos)
        return out

    @cached_property
    def audio(self) -> np.ndarray | None:
        """float32 mono samples in [-1, 1] at meta.audio.sample_rate, or None."""
        if self.meta.audio is None:
            return None
        import io

        path = self.folder / self.meta.audio.file
        try:
            return read_wav(io.BytesIO(self.read_bytes(self.meta.audio.file)), name=path)
        except (OSError, EOFError, wave.Error) as exc:
            raise DataError(f"{path}: unreadable audio ({exc}); delete {self.folder} and re-extract") from None


class FilesEntry(FaceTrackEntry):
    """An entry whose files are held in memory ({rel path: bytes}): a compact track that detection
    packed without writing a cache. It decodes exactly as the same files in a cache folder."""

    def __init__(self, meta: TrackMeta, files: dict[str, bytes], audio: np.ndarray | None = None, folder: str = "."):
        self._files = files
        super().__init__(folder, meta=meta)
        self.__dict__["audio"] = audio if meta.audio is not None else None

    def read_bytes(self, rel: str) -> bytes:
        try:
            return self._files[rel]
        except KeyError:
            raise FileNotFoundError(rel) from None


def entry_from_track(meta: TrackMeta, crops: list[np.ndarray], audio: np.ndarray | None = None) -> FaceTrackEntry:
    """An in-memory entry of one track as `extract_video` returns it, stored as its input spec says:
    compact tracks are packed and decoded exactly as `dfpanel extract` writes and reads them."""
    spec = InputSpec.from_dict(meta.input_spec) if meta.input_spec is not None else LEGACY_SPEC
    if spec.store == "compact":
        packed, files = pack_track(meta, crops, spec)
        return FilesEntry(packed, files, audio)
    return FaceTrackEntry.from_memory(meta, crops, audio)


@dataclass
class Layer:
    """One stored image of a frame, with the frame re-expressed for it: `frame.crop_box` is the source
    box the image covers and `frame.scale` its pixels per source pixel. An edit (augmentation, a
    pseudo-fake) that works on a crop and its FrameRecord works on any layer unchanged."""

    name: str  # "context" (entry.crop), "face" (entry.face) or "native" (entry.native)
    image: np.ndarray
    frame: FrameRecord


def frame_layers(entry: FaceTrackEntry, pos: int) -> list[Layer]:
    """The context crop of position `pos`, and, when stored apart (compact), its face layer and its
    native pixels."""
    layers = [context_layer(entry, pos), face_layer(entry, pos), native_layer(entry, pos)]
    return [layer for layer in layers if layer is not None]


def context_layer(entry: FaceTrackEntry, pos: int) -> Layer:
    """The context crop of position `pos` as a Layer (its frame describes it as it is)."""
    return Layer("context", entry.crop(pos), entry.meta.frames[pos])


def face_layer(entry: FaceTrackEntry, pos: int) -> Layer | None:
    """The face layer of position `pos` as a Layer, None when the entry has none (full)."""
    f = entry.meta.frames[pos]
    got = entry.face(pos)
    if got is None:
        return None
    image, (ox, oy) = got
    fb = f.face_box
    return Layer("face", image, replace(f, crop_box=[ox, oy, ox + fb[2] - fb[0], oy + fb[3] - fb[1]], scale=float(f.face_scale)))


def native_layer(entry: FaceTrackEntry, pos: int) -> Layer | None:
    """The native pixels of position `pos` as a Layer, None when the crop itself is native (full)."""
    f = entry.meta.frames[pos]
    if f.native_file is None:
        return None
    image, (ox, oy) = entry.native(pos)
    h, w = image.shape[:2]
    return Layer("native", image, replace(f, crop_box=[ox, oy, ox + w, oy + h], scale=1.0))


def edit_layers(entry: FaceTrackEntry, pos: int, edit) -> dict:
    """{"context": edit(context layer), "face"/"native": deferred edits of those layers}: what
    EditedEntry.from_layers takes. A layer is decoded and edited only when a view reads it (native
    pixels: CM and RR), so an edit costs a specialist only the layers it reads."""
    out = {"context": edit(context_layer(entry, pos))}
    if entry.meta.frames[pos].face_file is not None:
        out["face"] = lambda: edit(face_layer(entry, pos))
    if entry.meta.frames[pos].native_file is not None:
        out["native"] = lambda: edit(native_layer(entry, pos))
    return out


class EditedEntry(FaceTrackEntry):
    """A FaceTrackEntry with some crops (and the frames' meta, and/or the audio) replaced in memory:
    what augmentation and pseudo-fake generators hand to a view. Untouched positions read through to
    the base entry, so an edit of one sample costs only the crops it changes. `natives` and `faces`:
    edited layers of a compact entry (at the meta's `native_box` / `face_box`), each an image or a
    function returning one, called when a view first reads that layer; a `crops` value may be such a
    function too."""

    def __init__(self, base: FaceTrackEntry, meta: TrackMeta | None = None, crops: dict[int, np.ndarray] | None = None,
                 audio: np.ndarray | None | str = "base", natives: dict | None = None, faces: dict | None = None):
        super().__init__(base.folder, meta=meta if meta is not None else base.meta)
        self._base = base
        self._edited = dict(crops or {})
        self._natives = dict(natives or {})
        self._faces = dict(faces or {})
        self.audio_edited = not isinstance(audio, str)
        if isinstance(audio, str):  # "base": the base entry's audio (shared once decoded)
            if "audio" in base.__dict__:
                self.__dict__["audio"] = base.__dict__["audio"]
        else:
            self.__dict__["audio"] = audio

    @property
    def base(self) -> FaceTrackEntry:
        return self._base

    def crop(self, i: int) -> np.ndarray:
        if i in self._edited:
            edit = self._edited[i]
            if callable(edit):  # an edit made when first read (compact augmentation)
                edit = self._edited[i] = edit()
            return edit
        return self._base.crop(i)

    def native(self, i: int) -> tuple[np.ndarray, tuple[int, int]]:
        f = self.meta.frames[i]
        if f.native_file is None:  # full storage: the native pixels are the (edited) crop
            return super().native(i)
        got = self._layer_edit(self._natives, i, f.native_box)
        return got if got is not None else (self._base.native(i)[0], (int(f.native_box[0]), int(f.native_box[1])))

    def face(self, i: int) -> tuple[np.ndarray, tuple[int, int]] | None:
        f = self.meta.frames[i]
        if f.face_file is None:
            return None
        got = self._layer_edit(self._faces, i, f.face_box)
        if got is not None:
            return got
        if i in self._edited:  # the crop was edited, this layer not: stale, views use the crop
            return None
        base = self._base.face(i)
        return None if base is None else (base[0], (int(f.face_box[0]), int(f.face_box[1])))

    @staticmethod
    def _layer_edit(edits: dict, i: int, box) -> tuple[np.ndarray, tuple[int, int]] | None:
        edit = edits.get(i)
        if callable(edit):  # an edit made when first read: a view reads only some layers
            edit = edits[i] = edit()
        if edit is None:
            return None
        return edit, (int(box[0]), int(box[1]))

    @classmethod
    def from_layers(cls, base: FaceTrackEntry, edits: dict[int, dict[str, np.ndarray]], meta: TrackMeta | None = None,
                    audio: np.ndarray | None | str = "base") -> "EditedEntry":
        """Edited by layer: edits = {pos: {"context": image, "face": ..., "native": ...}} (edit_layers)."""
        crops = {p: e["context"] for p, e in edits.items() if "context" in e}
        natives = {p: e["native"] for p, e in edits.items() if "native" in e}
        faces = {p: e["face"] for p, e in edits.items() if "face" in e}
        return cls(base, meta=meta, crops=crops, audio=audio, natives=natives, faces=faces)

    @cached_property
    def audio(self) -> np.ndarray | None:
        return self._base.audio


PCM16_SCALE = 32768.0  # sample k of a 16-bit WAV is the float k / 32768, both ways


def normalise_audio(samples: np.ndarray, norm: str = "pcm16") -> np.ndarray:
    """The audio exactly as the cache holds it, as float32. "pcm16": clipped to [-1, 1) and quantised
    to the 16-bit grid k / 32768 (k in -32768..32767), so write_wav then read_wav gives back the very
    same floats. Extraction applies it once; the cache and the in-memory path both get its result."""
    if norm != "pcm16":
        raise ConfigError(f"unknown audio normalisation {norm!r}; choose pcm16")
    q = np.clip(np.round(np.asarray(samples, dtype=np.float64) * PCM16_SCALE), -32768, 32767)
    return (q.astype(np.int16).astype(np.float32) / np.float32(PCM16_SCALE)).astype(np.float32)


def read_wav(path, name=None) -> np.ndarray:
    """float32 samples of a 16-bit PCM WAV: `path` is a path or a binary file object (`name` then
    names it in errors)."""
    name = name if name is not None else path
    with wave.open(path if hasattr(path, "read") else str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise DataError(f"{name}: expected 16-bit PCM audio")
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        if w.getnchannels() > 1:
            data = data.reshape(-1, w.getnchannels()).mean(axis=1)
    return (data.astype(np.float32) / np.float32(PCM16_SCALE)).astype(np.float32)


def write_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate: int = AUDIO_RATE) -> None:
    """16-bit mono WAV of `samples` on the k / 32768 grid (the inverse of read_wav: samples already
    normalised with normalise_audio come back bit-equal)."""
    pcm = np.clip(np.round(np.asarray(samples, dtype=np.float64) * PCM16_SCALE), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


TMP_PREFIX = ".tmp-"
_OWNER_SEP = "~"  # .tmp-<video_id>~<host>~<pid>.<process start>~<random>: parsed from the right


def _host() -> str:
    import socket

    return "".join(c if c.isalnum() or c in ".-_" else "_" for c in socket.gethostname()) or "host"


def _start_time(pid: int) -> str | None:
    """A process's start time (clock ticks since boot, Linux /proc), so a reused pid is not taken for
    the process that made a temp entry; None where /proc is not available or the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
        fields = stat[stat.rindex(")") + 2:].split()
        return None if fields[0] == "Z" else fields[19]  # a zombie is gone too
    except (OSError, ValueError, IndexError):
        return None


def temp_owner_tag() -> str:
    """<host>~<pid>.<start time>: who owns the temp entries this process writes."""
    pid = os.getpid()
    return f"{_host()}{_OWNER_SEP}{pid}.{_start_time(pid) or 0}"


def temp_entry_owner_alive(name: str) -> bool | None:
    """For a temp entry folder name: True when the process that writes it is alive, False when it is
    gone, None when that cannot be known here (another host, or a name without an owner: an older
    dfpanel)."""
    if not name.startswith(TMP_PREFIX):
        return None
    parts = name[len(TMP_PREFIX):].rsplit(_OWNER_SEP, 3)
    if len(parts) != 4:
        return None
    _, host, proc, _ = parts
    if host != _host():
        return None
    try:
        pid_text, start = proc.split(".", 1)
        pid = int(pid_text)
    except ValueError:
        return None
    if pid == os.getpid():
        return True
    now = _start_time(pid)
    if now is not None:
        return start == "0" or now == start
    if os.path.isdir("/proc"):
        return False  # no such process (or a zombie)
    try:  # no /proc: ask the kernel whether the pid exists
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class CacheFullError(DfpanelError):
    """The cache's disk is full (ENOSPC) or its quota spent (EDQUOT): the run stops, nothing is
    recorded as a failed video, and a re-run resumes once there is space."""

    exit_code = 1


def is_disk_full(exc: BaseException) -> bool:
    import errno

    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def disk_full_message(cache_root: str | os.PathLike, what: str) -> str:
    return (f"no space left on the disk of the cache folder {cache_root} while writing {what}; free some space "
            f"(or extract into another --out) and re-run the same command to resume")


class EntryWriter:
    """Builds one entry in a temp folder and renames it into place on commit, so an entry is
    complete or absent even if the process is killed mid-write. The temp folder's name says which
    process on which host owns it (`temp_owner_tag`), so a later run removes the temp folders of a
    killed run at once and never those of a live concurrent one. A failed write (a full disk:
    OSError) removes the temp folder before the error propagates."""

    def __init__(self, cache_root: str | os.PathLike, dataset: str, video_id: str):
        self.final = Path(cache_root) / dataset / video_id
        self.tmp = Path(cache_root) / dataset / (
            f"{TMP_PREFIX}{video_id}{_OWNER_SEP}{temp_owner_tag()}{_OWNER_SEP}{uuid.uuid4().hex[:8]}"
        )
        try:
            (self.tmp / "crops").mkdir(parents=True, exist_ok=False)
        except BaseException:
            self.abort()
            raise

    def add_crop(self, position: int, rgb: np.ndarray) -> str:
        from PIL import Image

        rel = f"crops/{position:06d}.png"
        # compress_level 1: lossless either way, 3-5x faster to write than the default 6.
        Image.fromarray(np.ascontiguousarray(rgb)).save(self.tmp / rel, compress_level=1)
        return rel

    def add_file(self, rel: str, data: bytes) -> str:
        """A stored file (a compact frame's image) at `rel` inside the entry."""
        path = self.tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return rel

    def add_audio(self, samples: np.ndarray, sample_rate: int = AUDIO_RATE) -> str:
        write_wav(self.tmp / "audio.wav", samples, sample_rate)
        return "audio.wav"

    def commit(self, meta: TrackMeta) -> Path:
        (self.tmp / "meta.json").write_text(meta.to_json())
        if self.final.exists():
            shutil.rmtree(self.final)
        os.replace(self.tmp, self.final)
        return self.final

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


class FaceTrackCache:
    """Read side of a cache: its index, entries and the InputSpec they were extracted with."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not (self.root / INDEX_FILE).is_file():
            raise DataError(f"{self.root}: not a face-track cache (no {INDEX_FILE}); run `dfpanel extract MANIFEST --out {self.root}`")

    @property
    def input_spec(self) -> InputSpec:
        return read_cache_spec(self.root)

    def rows(self) -> list[CacheIndexRow]:
        """Index rows; a video extracted twice (re-run, merge) keeps its last row."""
        by_id: dict[tuple[str, str], CacheIndexRow] = {}
        with open(self.root / INDEX_FILE, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = CacheIndexRow(**json.loads(line))
                except (json.JSONDecodeError, TypeError) as exc:
                    raise DataError(f"{self.root / INDEX_FILE}:{lineno}: bad index row ({exc})") from None
                by_id[(row.dataset, row.id)] = row
        return list(by_id.values())

    def entry(self, row: CacheIndexRow) -> FaceTrackEntry:
        return FaceTrackEntry(self.root / row.dir)


def append_index_row(cache_root: str | os.PathLike, row: CacheIndexRow) -> None:
    """Append one row; a single short write per line keeps concurrent appenders from interleaving."""
    line = json.dumps(asdict(row)) + "\n"
    fd = os.open(Path(cache_root) / INDEX_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


# -- the cache's InputSpec --------------------------------------------------------------------------

_warned_legacy: set[str] = set()


def read_cache_spec(root: str | os.PathLike) -> InputSpec:
    """The InputSpec recorded in CACHE/input_spec.json. A cache made before specs were recorded has
    none: it reads as the default spec, with a warning (once per cache)."""
    root = Path(root)
    path = root / SPEC_FILE
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        key = str(root.resolve())
        if key not in _warned_legacy:
            _warned_legacy.add(key)
            log.warning("%s: no %s (a cache from before input specs were recorded); assuming the default "
                        "extraction settings (%s)", root, SPEC_FILE, LEGACY_SPEC.extract_args())
        return LEGACY_SPEC
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: unreadable input spec ({exc.msg}); restore it, or re-extract into a new cache") from None
    return InputSpec.from_dict(d, source=str(path))


def has_cache_spec(root: str | os.PathLike) -> bool:
    return (Path(root) / SPEC_FILE).is_file()


def record_cache_spec(root: str | os.PathLike, spec: InputSpec) -> InputSpec:
    """Make sure the cache at `root` holds entries of `spec` only: write CACHE/input_spec.json when the
    cache has none (a new cache), else check that it matches. ConfigError (one line, what differs)
    when it does not, since a cache mixing two extractions is a silent bug. Frames per video may
    differ (sampling density). Returns the cache's spec."""
    root = Path(root)
    if has_cache_spec(root) or (root / INDEX_FILE).is_file():
        have = read_cache_spec(root)
        check_same_views(
            have, spec, have_name=f"cache {root}", want_name="this extraction", labels=("cache", "now"),
            fix=f"extract into a new --out, or use the cache's settings: {have.extract_args()}",
        )
        if have.frames != spec.frames:
            log.info("%s: extracting %d frames per video into a cache of %d (sampling density only)", root, spec.frames, have.frames)
        return have
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{SPEC_FILE}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.write_text(json.dumps(spec.to_dict(), indent=1) + "\n", encoding="utf-8")
    try:
        os.link(tmp, root / SPEC_FILE)  # atomic, and fails if a concurrent run wrote one first
    except FileExistsError:
        return record_cache_spec(root, spec)
    except OSError:  # a file system without hard links
        if not (root / SPEC_FILE).exists():
            os.replace(tmp, root / SPEC_FILE)
    finally:
        tmp.unlink(missing_ok=True)
    return spec

"""Typed training configs loaded from YAML presets.

A preset is one YAML file per specialist x stage (`configs/cm/ffpp.yaml`). A file may name base files
under `defaults:` (a name or a list); bases merge in order, then the file itself on top (mappings merge
key by key, anything else replaces). Base names resolve next to the file first, then under the
package's config folder. Dotted overrides `optim.lr=1e-4` come last; their values are parsed with
`yaml.safe_load`, so `data.chunks=[0,1]` gives a list and `model.pretrained=false` a bool.

Every mistake is a `ConfigError` naming the file (or override) and the key.
"""

from __future__ import annotations

import copy
import types
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Union

import yaml

from dfpanel.errors import ConfigError

CONFIG_ROOT = Path(__file__).resolve().parents[1] / "configs"
SCHEDULES = ("cosine", "onecycle", "constant")
CHUNK_ORDERS = ("given", "auto")
PRECISIONS = ("auto", "32", "32-true", "16-mixed", "bf16-mixed")
@dataclass
class ModelConfig:
    """Arguments of `create_specialist`; None means the specialist's own default."""

    specialist: str = ""
    backbone: str | None = None  # "efficientnet_b4" | "tiny" | any timm name
    pretrained: bool | None = None
    pretrained_path: str | None = None
    image_size: int | None = None
    clip_len: int | None = None
    fusion_dim: int | None = None
    fusion_heads: int | None = None
    dropout: float | None = None
    mask_head: bool | None = None  # blend-mask head (BG, RR), trained with pseudofakes.mask_weight
    tuning: str | None = None  # what of the backbone trains: full | layernorm | svd_residual
    backbone_args: dict | None = None  # extra timm.create_model kwargs, e.g. {depth: 2, embed_dim: 64}
    svd_residual_rank: int | None = None  # smallest singular components trained per linear (svd_residual)
    extra: dict = field(default_factory=dict)  # further specialist-specific kwargs

    def kwargs(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("specialist", "extra")}
        out = {k: v for k, v in out.items() if v is not None}
        out.update(self.extra)
        return out


@dataclass
class DataConfig:
    cache: str | None = None  # face-track cache root (`--data`)
    # Streaming instead (docs/training.md): a shard set from `dfpanel cache pack` (a folder or URL holding
    # shards.json; `--data` sets this key for one), read in sequence; `val_shards` (default: `shards`).
    shards: str | None = None
    val_shards: str | None = None
    shuffle_buffer: int = 1000  # streaming: samples each loader worker holds to shuffle them
    manifest: str | None = None  # optional: only videos listed here (`--manifest`)
    dataset: str | None = None  # only cache rows of this dataset (ffpp / celebdf / dfdc ...)
    train_split: str = "train"
    val_split: str = "val"
    chunked: bool = False  # train chunk by chunk (DFDC)
    chunks: list[int] | None = None  # chunks to train, in this order (None: all in the cache, ascending)
    chunk_order: str = "given"  # "given" | "auto" (easiest first by the incoming weights' loss)
    chunk_sample: int = 64  # samples per chunk scored for `chunk_order: auto`
    frames_per_video: int | None = None  # train: evenly spaced frames (or clips) per video; None = all
    val_frames_per_video: int | None = None
    max_videos: int | None = None  # cap per split (debugging, tiny presets)
    balanced: bool = True  # WeightedRandomSampler for class balance (streaming: resampled by class weight)
    # Paired batches: each fake next to a sample of the real video it was made from (same dataset and
    # group: FF++ pair, DFDC original, Celeb-DF identity; a pseudo-fake's own real), so identity and
    # scene cannot tell them apart. Replaces `balanced` (a paired batch is half real, half fake).
    paired: bool = False
    samples_per_epoch: int | None = None  # sampler draws per epoch (None: size of the train set)
    batch_size: int = 32
    val_batch_size: int | None = None
    num_workers: int = 4
    pin_memory: bool = True


@dataclass
class AugmentConfig:
    # Albumentations transforms by class name, applied to the cached crops before the view:
    #   - {name: HorizontalFlip, p: 0.5}
    transforms: list[dict] = field(default_factory=list)
    # Each specialist says which transforms would destroy its traces (Specialist.augment_refusal; CM's
    # list is in models/specialists/cm.py); this lets a stage opt in to the resizing/recompressing ones.
    allow_resample: bool = False


PSEUDOFAKE_MODES = ("off", "mix", "only")


@dataclass
class PseudoFakeConfig:
    """Pseudo-fakes made on the fly from REAL training samples (dfpanel.pseudofakes), one generator per trace.

    mode: off | mix (added to the dataset's real and fake samples) | only (the reals alone: every real
    sample also appears as its own pseudo-fake, so a folder of real videos is enough to train).
    """

    mode: str = "off"
    ratio: float = 0.5  # mix: the share of fake draws that are pseudo-fakes (the rest: the dataset's fakes)
    # [{name: self_blend, weight: 1.0, <generator options>...}]; empty: the specialist's own
    # (Specialist.pseudofakes), with their default options.
    generators: list[dict] = field(default_factory=list)
    val: bool = True  # validation gets pseudo-twins of its reals too (mode only: else val AUC is undefined)
    mask_weight: float = 0.0  # loss weight of the blend-mask head (BG, RR: model.mask_head true)


@dataclass
class OptimConfig:
    lr: float = 3e-4
    weight_decay: float = 1e-2
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    schedule: str = "cosine"  # cosine | onecycle | constant
    warmup_steps: int = 0
    min_lr_ratio: float = 0.01  # cosine floor, as a fraction of lr
    aux_weight: float = 0.3  # loss = bce(logit) + aux_weight * bce(aux_logit)
    pos_weight: Any = "auto"  # "auto" (from the train split), a number, or null (no weighting)
    grad_clip: float | None = 1.0
    svd_orth_weight: float = 0.0  # loss += weight x orthogonality of SVD-residual layers (tuning svd_residual)


@dataclass
class TrainerConfig:
    max_epochs: int = 10
    max_steps: int = -1
    precision: str = "auto"  # auto: bf16-mixed / 16-mixed on GPU, 32 on CPU
    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str = "auto"  # "ddp" for several GPUs or nodes
    accumulate_grad_batches: int = 1
    early_stopping_patience: int = 3  # validations without AUC gain; 0 disables
    val_check_interval: Any = 1.0
    limit_train_batches: Any = 1.0
    limit_val_batches: Any = 1.0
    log_every_n_steps: int = 50
    checkpoint_every_n_steps: int = 500  # last.ckpt for resume, besides every validation
    num_sanity_val_steps: int = 0
    seed: int = 42
    deterministic: bool = False


@dataclass
class StageConfig:
    name: str = ""  # run name, e.g. "cm_ffpp"
    stage: str = ""  # ffpp / celebdf / dfdc / tiny ...
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    pseudofakes: PseudoFakeConfig = field(default_factory=PseudoFakeConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    init_from: str | None = None  # local path | previous run name or dir | http(s) URL
    init_sha256: str | None = None  # required match for init_from when given
    init_strict: bool = True
    carry_optimizer: bool = False  # curriculum: keep the previous stage's optimizer state
    source: str = ""  # the file it was loaded from (set by the loader)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def specialist(self) -> str:
        return self.model.specialist


# --------------------------------------------------------------------------------------------- loading


def list_presets() -> list[str]:
    """Preset names shipped with the package, e.g. "cm/ffpp", "cm/tiny_ffpp"."""
    return sorted(
        str(p.relative_to(CONFIG_ROOT).with_suffix(""))
        for p in CONFIG_ROOT.rglob("*.yaml")
        if p.parent != CONFIG_ROOT and p.parent.name != "stages" and not p.name.startswith("_")
    )


def resolve_config_path(name_or_path: str | Path, relative_to: Path | None = None) -> Path:
    """A file path (with or without .yaml) or a preset name like `cm/ffpp`."""
    raw = str(name_or_path)
    bases = ([relative_to] if relative_to is not None else []) + [Path.cwd(), CONFIG_ROOT]
    for base in bases:
        for cand in (Path(raw), Path(raw + ".yaml")):
            path = cand if cand.is_absolute() else base / cand
            if path.is_file():
                return path.resolve()
    hint = ", ".join(list_presets()[:6])
    raise ConfigError(f"{raw}: no such config file or preset; give a YAML path or a preset such as {hint}")


def load_yaml_tree(path: Path, _stack: tuple[Path, ...] = ()) -> dict:
    """Read one YAML file with its `defaults` merged in."""
    if path in _stack:
        raise ConfigError(f"{path}: `defaults` form a cycle ({' -> '.join(p.name for p in _stack + (path,))})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); fix the file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys, got {type(data).__name__}")
    bases = data.pop("defaults", None) or []
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: `defaults` must be a file name or a list of file names")
    merged: dict = {}
    for base in bases:
        base_path = resolve_config_path(base, relative_to=path.parent)
        merged = deep_merge(merged, load_yaml_tree(base_path, _stack + (path,)))
    return deep_merge(merged, data)


def deep_merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_override(tree: dict, override: str) -> dict:
    """Apply one `key.sub=value` override to a raw config tree (checked against StageConfig)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r}: expected key=value, e.g. optim.lr=1e-4")
    key, raw = override.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    target = _check_key_path(parts, f"override {override!r}")
    if _strip_optional(target) is str and raw.strip() not in ("", "null", "~"):
        # Keep strings verbatim: YAML would turn a sha256 of digits into an int, "1e5" into a float.
        value = raw.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
    else:
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            raise ConfigError(f"override {override!r}: value is not valid YAML") from None
    tree = copy.deepcopy(tree)
    node = tree
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value
    return tree


def _check_key_path(parts: list[str], where: str):
    """The declared type of the dotted key (Any inside free-form mappings); ConfigError if unknown."""
    cls: Any = StageConfig
    for i, part in enumerate(parts):
        if not is_dataclass(cls):
            if cls is dict or cls is Any or typing.get_origin(cls) is dict:
                return Any  # free-form mapping (model.extra)
            raise ConfigError(f"{where}: {'.'.join(parts[:i])} has no sub-keys")
        hints = _hints(cls)
        if part not in hints or part == "source":
            known = ", ".join(h for h in hints if h != "source")
            raise ConfigError(f"{where}: unknown key {'.'.join(parts[: i + 1])!r}; known keys here: {known}")
        cls = _strip_optional(hints[part])
    return cls


def load_stage_config(name_or_path: str | Path, overrides: list[str] | None = None) -> StageConfig:
    """Load a preset name (`cm/ffpp`) or YAML path, apply `key=value` overrides, validate."""
    path = resolve_config_path(name_or_path)
    tree = load_yaml_tree(path)
    for override in overrides or []:
        tree = apply_override(tree, override)
    return stage_config_from_dict(tree, source=str(path))


def stage_config_from_dict(tree: dict, source: str = "<dict>") -> StageConfig:
    tree = dict(tree)
    tree.pop("source", None)
    cfg = _build(StageConfig, tree, prefix="", source=source)
    cfg.source = source
    validate(cfg)
    return cfg


def validate(cfg: StageConfig) -> None:
    src = cfg.source or "<config>"
    if not cfg.model.specialist:
        raise ConfigError(f"{src}: model.specialist is not set; set it to one of bg, av, cm, rr, tm")
    if cfg.optim.schedule not in SCHEDULES:
        raise ConfigError(f"{src}: optim.schedule must be one of {', '.join(SCHEDULES)}, got {cfg.optim.schedule!r}")
    pw = cfg.optim.pos_weight
    if not (pw is None or pw == "auto" or (isinstance(pw, (int, float)) and not isinstance(pw, bool) and pw > 0)):
        raise ConfigError(f"{src}: optim.pos_weight must be auto, a positive number or null, got {pw!r}")
    if cfg.data.chunk_order not in CHUNK_ORDERS:
        raise ConfigError(f"{src}: data.chunk_order must be one of {', '.join(CHUNK_ORDERS)}, got {cfg.data.chunk_order!r}")
    if str(cfg.trainer.precision) not in PRECISIONS:
        raise ConfigError(f"{src}: trainer.precision must be one of {', '.join(PRECISIONS)}, got {cfg.trainer.precision!r}")
    if cfg.data.batch_size < 1:
        raise ConfigError(f"{src}: data.batch_size must be at least 1")
    if cfg.init_sha256 is not None:
        sha = cfg.init_sha256.lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ConfigError(f"{src}: init_sha256 must be 64 hex digits")
        cfg.init_sha256 = sha
    for i, spec in enumerate(cfg.augment.transforms):
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise ConfigError(f"{src}: augment.transforms[{i}] needs a `name:` (an albumentations transform)")
    check_augmentation(cfg)
    check_pseudofakes(cfg)
    check_streaming(cfg)


def check_streaming(cfg: StageConfig) -> None:
    """Streaming from shards reads each video once, in sequence: what needs random access to the data
    (another video's entry, a random subset) cannot come with it."""
    src = cfg.source or "<config>"
    d = cfg.data
    if d.val_shards and not d.shards:
        raise ConfigError(f"{src}: data.val_shards needs data.shards (training streams from shards too); set both")
    if not d.shards:
        return
    if d.cache:
        raise ConfigError(f"{src}: data.cache and data.shards are both set; train from the cache folder or from "
                          f"shards, not both (null one of them)")
    if d.shuffle_buffer < 0:
        raise ConfigError(f"{src}: data.shuffle_buffer must be >= 0 (0 or 1: no buffer), got {d.shuffle_buffer}")
    fix = "train from the cache folder (--data CACHE) or"
    if cfg.pseudofakes.mode != "off":
        raise ConfigError(f"{src}: pseudofakes.mode {cfg.pseudofakes.mode} cannot stream from shards (pseudo-fake "
                          f"twins and AV's voice donors read other videos at random); {fix} set pseudofakes.mode=off")
    if cfg.pseudofakes.mask_weight:
        raise ConfigError(f"{src}: pseudofakes.mask_weight needs mask targets, which come with pseudo-fakes and "
                          f"cannot stream from shards; {fix} set pseudofakes.mask_weight=0")
    if d.paired:
        raise ConfigError(f"{src}: data.paired cannot stream from shards (each fake's real video is read at "
                          f"random); {fix} set data.paired=false")


def check_pseudofakes(cfg: StageConfig) -> None:
    src = cfg.source or "<config>"
    pf = cfg.pseudofakes
    if pf.mode not in PSEUDOFAKE_MODES:
        raise ConfigError(f"{src}: pseudofakes.mode must be one of {', '.join(PSEUDOFAKE_MODES)}, got {pf.mode!r}")
    if not (isinstance(pf.ratio, (int, float)) and 0 < pf.ratio < 1):
        raise ConfigError(f"{src}: pseudofakes.ratio must be a share between 0 and 1 (exclusive), got {pf.ratio!r}")
    if pf.mask_weight < 0:
        raise ConfigError(f"{src}: pseudofakes.mask_weight must be >= 0, got {pf.mask_weight!r}")
    for i, g in enumerate(pf.generators):
        if not isinstance(g, dict) or not isinstance(g.get("name"), str):
            raise ConfigError(f"{src}: pseudofakes.generators[{i}] needs a `name:` (a pseudo-fake generator)")
        if "weight" in g and not (isinstance(g["weight"], (int, float)) and g["weight"] > 0):
            raise ConfigError(f"{src}: pseudofakes.generators[{i}].weight must be a positive number")
    if pf.mode == "off":
        return
    from dfpanel.models.specialists.base import find_specialist
    from dfpanel.pseudofakes.base import pseudofake_class

    for g in pf.generators:
        cls = pseudofake_class(g["name"])  # ConfigError naming the known ones
        cls(**{k: v for k, v in g.items() if k not in ("name", "weight")})  # options checked now, not in a worker
    spec = find_specialist(cfg.model.specialist)
    for d in (spec.pseudofakes if spec is not None and not pf.generators else ()):
        d = {"name": d} if isinstance(d, str) else d
        pseudofake_class(d["name"])(**{k: v for k, v in d.items() if k not in ("name", "weight")})
    if not pf.generators and spec is not None and not spec.pseudofakes:
        raise ConfigError(f"{src}: specialist {cfg.model.specialist!r} has no pseudo-fake generators of its own; "
                          f"list some under pseudofakes.generators or set pseudofakes.mode: off")
    if pf.mask_weight and spec is not None and spec.mask_input is None:
        raise ConfigError(f"{src}: pseudofakes.mask_weight needs a mask head, which {cfg.model.specialist!r} has not; set it to 0")


def check_augmentation(cfg: StageConfig) -> None:
    """Refuse a transform the stage's specialist says would destroy its traces (one line naming it)."""
    if not cfg.augment.transforms:
        return
    from dfpanel.models.specialists.base import find_specialist

    cls = find_specialist(cfg.model.specialist)
    if cls is None:  # not registered (yet): `create_specialist` will say so when training starts
        return
    flags = {f.name: getattr(cfg.augment, f.name) for f in fields(cfg.augment) if f.name.startswith("allow_")}
    for i, spec in enumerate(cfg.augment.transforms):
        why = cls.augment_refusal(spec, flags)
        if why:
            raise ConfigError(f"{cfg.source or '<config>'}: augment.transforms[{i}] {spec['name']} {why}")


# ------------------------------------------------------------------------------------- typed building


def _hints(cls) -> dict:
    if not is_dataclass(cls):
        return {}
    return typing.get_type_hints(cls)


def _strip_optional(tp):
    args = typing.get_args(tp)
    if _is_union(tp) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else tp
    return tp


def _is_union(tp) -> bool:
    return typing.get_origin(tp) is Union or isinstance(tp, types.UnionType)


def _build(cls, data: Any, prefix: str, source: str):
    where = prefix.rstrip(".") or "top level"
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {where} must be a mapping, got {data!r}")
    hints = _hints(cls)
    unknown = [k for k in data if k not in hints or k == "source"]
    if unknown:
        known = ", ".join(f.name for f in fields(cls) if f.name != "source")
        raise ConfigError(f"{source}: unknown key {prefix + unknown[0]!r}; known keys here: {known}")
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        kwargs[f.name] = _coerce(data[f.name], hints[f.name], prefix + f.name, source)
    return cls(**kwargs)


def _coerce(value: Any, tp, key: str, source: str):
    def bad(expected: str):
        return ConfigError(f"{source}: {key} must be {expected}, got {value!r}")

    if tp is Any:
        return value
    if is_dataclass(tp):
        return _build(tp, value if value is not None else {}, key + ".", source)
    if _is_union(tp):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise bad(" or ".join(_type_name(a) for a in args))
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, source)
            except ConfigError:
                continue
        raise bad(" or ".join(_type_name(a) for a in args if a is not type(None)))
    origin = typing.get_origin(tp)
    if origin is list:
        if not isinstance(value, list):
            raise bad("a list")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise bad("a mapping")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            # YAML reads 1e-4 (no dot) as a string; accept numeric strings.
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    pass
            raise bad("a number")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise bad("a string")
        return str(value)
    return value


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is list:
        return "a list"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "a mapping"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


__all__ = [
    "AugmentConfig",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "StageConfig",
    "TrainerConfig",
    "CONFIG_ROOT",
    "list_presets",
    "load_stage_config",
    "resolve_config_path",
    "stage_config_from_dict",
    "apply_override",
]

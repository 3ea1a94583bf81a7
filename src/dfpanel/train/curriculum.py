"""Staged training: FF++ -> Celeb-DF -> DFDC, and DFDC itself chunk by chunk.

Each stage starts from the previous stage's best weights (only the model carries over; the optimizer
starts fresh unless the stage sets `carry_optimizer: true`). A chunked stage trains its chunks in the
order the config gives, or `chunk_order: auto` = easiest first by the incoming weights' loss on a
sample of each chunk. `progress.json` in the stage folder records the order and finished chunks, so a
re-run continues at the chunk (and, from its last.ckpt, the step) where it stopped.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import random
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch

from dfpanel.config import StageConfig, load_stage_config
from dfpanel.errors import ConfigError, DataError
from dfpanel.models.weights import sidecar_path
from dfpanel.train.fetch import WEIGHTS_FILE, resolve_init, sha256_of
from dfpanel.train.run import (
    RESULT_FILE,
    _write_json,
    fit_stage,
    is_launcher_rank_zero,
    last_checkpoint,
    train_stage,
    view_of,
)

log = logging.getLogger(__name__)

STAGES = ("ffpp", "celebdf", "dfdc")
PROGRESS_FILE = "progress.json"


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def preset_name(specialist: str, stage: str, preset: str) -> str:
    if preset not in ("tiny", "full"):
        raise ConfigError(f"--preset must be tiny or full, got {preset!r}")
    return f"{specialist}/{'tiny_' if preset == 'tiny' else ''}{stage}"


def run_curriculum(
    specialist: str,
    *,
    cache: str,
    out: str | Path,
    stages: Sequence[str] = STAGES,
    preset: str = "tiny",
    manifests: dict[str, str] | None = None,
    overrides: Sequence[str] = (),
    init_from: str | None = None,
    init_sha256: str | None = None,
    progress: bool = True,
) -> list[dict]:
    """Run `stages` in order into OUT/<specialist>/<stage>/, each initialised from the one before.
    A finished stage (result.json) is skipped; an interrupted one resumes from its last.ckpt."""
    out = Path(out)
    results: list[dict] = []
    prev: dict | None = None
    prev_dir: Path | None = None
    for stage in stages:
        extra = [f"data.cache={cache}"]
        if manifests and manifests.get(stage):
            extra.append(f"data.manifest={manifests[stage]}")
        cfg = load_stage_config(preset_name(specialist, stage, preset), [*overrides, *extra])
        if prev is not None:
            cfg.init_from, cfg.init_sha256 = prev["weights"], prev["sha256"]
        elif init_from:
            cfg.init_from, cfg.init_sha256 = init_from, init_sha256
        stage_dir = out / specialist / stage
        if (stage_dir / RESULT_FILE).is_file():
            result = json.loads((stage_dir / RESULT_FILE).read_text())
            log.info("stage %s already finished (%s)", stage, stage_dir)
        else:
            resume = last_checkpoint(stage_dir).is_file() or (stage_dir / PROGRESS_FILE).is_file()
            opt_state = _optimizer_state(prev_dir) if cfg.carry_optimizer and prev_dir is not None else None
            if cfg.data.chunked:
                result = train_chunked(cfg, stage_dir, resume=resume, progress=progress, optimizer_state=opt_state)
            elif opt_state is not None:
                result = fit_stage(cfg, stage_dir, resume=resume, optimizer_state=opt_state, progress=progress)
            else:
                result = train_stage(cfg, stage_dir, resume=resume, progress=progress)
        results.append(result)
        prev, prev_dir = result, stage_dir
        free_memory()
    return results


def _optimizer_state(run_dir: Path) -> dict | None:
    """The previous stage's optimizer state from its last.ckpt (our own file, so unpickling is safe)."""
    ckpt = last_checkpoint(run_dir)
    if not ckpt.is_file():
        ckpt = next(iter(sorted(run_dir.glob("chunk_*/checkpoints/last.ckpt"))[-1:]), None)
    if ckpt is None:
        log.warning("%s: no last.ckpt to carry the optimizer from; starting it fresh", run_dir)
        return None
    states = torch.load(ckpt, map_location="cpu", weights_only=False).get("optimizer_states") or [None]
    return states[0]


# ------------------------------------------------------------------------------------------- chunks


def available_chunks(cfg: StageConfig) -> list[int]:
    from dfpanel.train.datamodule import stage_rows

    rows = stage_rows(cfg, cfg.data.train_split)
    return sorted({r.chunk for r in rows if r.chunk is not None})


def chunk_losses(cfg: StageConfig, chunks: Sequence[int], model) -> dict[int, float]:
    """Mean BCE of `model` on `chunk_sample` training samples of each chunk (no augmentation)."""
    from torch.nn.functional import binary_cross_entropy_with_logits
    from torch.utils.data import DataLoader, Subset

    from dfpanel.data.samples import dataset_for
    from dfpanel.train.datamodule import stage_rows

    device = "cuda" if torch.cuda.is_available() and cfg.trainer.accelerator != "cpu" else "cpu"
    model = model.to(device).eval()
    losses: dict[int, float] = {}
    for chunk in chunks:
        rows = stage_rows(cfg, cfg.data.train_split, chunks=[chunk])
        ds = dataset_for(model.sample_kind)(cfg.data.cache, rows, view_of(model), per_video=cfg.data.frames_per_video)
        idx = list(range(len(ds)))
        random.Random(cfg.trainer.seed + chunk).shuffle(idx)
        loader = DataLoader(Subset(ds, idx[: cfg.data.chunk_sample]), batch_size=cfg.data.batch_size,
                            num_workers=cfg.data.num_workers)
        total, n = 0.0, 0
        with torch.inference_mode():
            for inputs, labels, _ in loader:
                inputs = {k: v.to(device) for k, v in inputs.items()}
                logit = model(inputs).logit.float().cpu()
                total += float(binary_cross_entropy_with_logits(logit, labels, reduction="sum"))
                n += labels.numel()
        losses[chunk] = total / max(n, 1)
    return losses


def auto_chunk_order(cfg: StageConfig, chunks: Sequence[int], init_path: Path | None) -> tuple[list[int], dict]:
    """Easiest first: ascending loss of the incoming weights (ties keep the given order)."""
    from dfpanel.models.specialists.base import create_specialist

    model = create_specialist(cfg.specialist, **{**cfg.model.kwargs(), "pretrained": False})
    if init_path is not None:
        from dfpanel.models.weights import load_weights

        state, _ = load_weights(init_path, expected_specialist=cfg.specialist)
        model.load_state_dict(state, strict=cfg.init_strict)
    losses = chunk_losses(cfg, chunks, model)
    order = sorted(chunks, key=lambda c: (losses[c], list(chunks).index(c)))
    del model
    free_memory()
    return order, losses


def train_chunked(
    cfg: StageConfig, out_dir, *, resume: bool = False, progress: bool = True, optimizer_state: dict | None = None
) -> dict:
    """Train a chunked stage: OUT/chunk_<k>/ per chunk, each from the previous chunk's best weights;
    OUT/best.safetensors is the last chunk's best."""
    out_dir = Path(out_dir)
    prog_path = out_dir / PROGRESS_FILE
    if prog_path.is_file():
        if not resume:
            raise ConfigError(f"{out_dir}: already holds a run; pass --resume to continue it or choose another --out")
        state = json.loads(prog_path.read_text())
    else:
        if resume and not (out_dir / RESULT_FILE).is_file():
            raise ConfigError(f"{out_dir}: nothing to resume (no {PROGRESS_FILE}); drop --resume to start it")
        if resume:
            return json.loads((out_dir / RESULT_FILE).read_text())
        state = {"order": None, "done": [], "results": {}, "losses": None}

    incoming = None
    if cfg.init_from:
        incoming = resolve_init(cfg.init_from, sha256=cfg.init_sha256, runs_root=out_dir.parent, progress=progress)
    if state["order"] is None:
        present = available_chunks(cfg)
        wanted = list(cfg.data.chunks) if cfg.data.chunks is not None else present
        missing = [c for c in wanted if c not in present]
        if missing:
            log.warning("chunks %s have no training videos in %s; skipping them", missing, cfg.data.cache)
        chunks = [c for c in wanted if c in present]
        if not chunks:
            raise DataError(f"{cfg.data.cache}: none of the chunks {wanted} has training videos; check data.chunks")
        if cfg.data.chunk_order == "auto":
            state["order"], state["losses"] = auto_chunk_order(cfg, chunks, incoming)
        else:
            state["order"] = chunks
        if is_launcher_rank_zero():
            out_dir.mkdir(parents=True, exist_ok=True)
            _write_json(prog_path, state)

    init_path, init_sha = (str(incoming), sha256_of(incoming)) if incoming is not None else (None, None)
    result: dict | None = None
    for i, chunk in enumerate(state["order"]):
        key = str(chunk)
        if chunk in state["done"]:
            result = state["results"][key]
            init_path, init_sha = result["weights"], result["sha256"]
            continue
        chunk_dir = out_dir / f"chunk_{chunk}"
        chunk_cfg = dataclasses.replace(cfg, init_from=init_path, init_sha256=init_sha, name=f"{cfg.name}_chunk{chunk}")
        result = fit_stage(
            chunk_cfg,
            chunk_dir,
            resume=last_checkpoint(chunk_dir).is_file(),
            chunk=chunk,
            optimizer_state=optimizer_state if i == 0 else None,
            progress=progress,
        )
        state["done"].append(chunk)
        state["results"][key] = result
        if is_launcher_rank_zero():
            _write_json(prog_path, state)
        init_path, init_sha = result["weights"], result["sha256"]
        free_memory()

    assert result is not None
    final = out_dir / WEIGHTS_FILE
    if is_launcher_rank_zero():
        shutil.copyfile(result["weights"], final)
        if sidecar_path(Path(result["weights"])).is_file():
            shutil.copyfile(sidecar_path(Path(result["weights"])), sidecar_path(final))
    summary = {
        **result,
        "run_dir": str(out_dir),
        "weights": str(final),
        "chunk_order": state["order"],
        "chunk_losses": state["losses"],
        "chunks": {k: v["metrics"] for k, v in state["results"].items()},
    }
    if is_launcher_rank_zero():
        _write_json(out_dir / RESULT_FILE, summary)
    return summary

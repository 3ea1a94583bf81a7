"""Staged training: FF++ -> Celeb-DF -> DFDC, and DFDC itself chunk by chunk.

Each stage starts from the previous stage's best weights (only the model carries over; the optimizer
starts fresh unless the stage sets `carry_optimizer: true`). A chunked stage trains its chunks in the
order the config gives, or `chunk_order: auto` = easiest first by the incoming weights' loss on a
sample of each chunk. `progress.json` in the stage folder records the order and finished chunks, so a
re-run continues at the chunk (and, from its last.ckpt, the step) where it stopped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from dfpanel.errors import ConfigError
from dfpanel.extract.shards import is_shard_set
from dfpanel.train.chunks import PROGRESS_FILE, train_chunked
from dfpanel.train.config import load_stage_config
from dfpanel.train.run import RESULT_FILE, fit_stage, free_memory, last_checkpoint
from dfpanel.train.stage import train_stage

log = logging.getLogger(__name__)

STAGES = ("ffpp", "celebdf", "dfdc")


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
    `cache`: a face-track cache, or a shard set to stream (a URL, or a folder holding shards.json).
    A finished stage (result.json) is skipped; an interrupted one resumes from its last.ckpt."""
    out = Path(out)
    results: list[dict] = []
    prev: dict | None = None
    prev_dir: Path | None = None
    for stage in stages:
        extra = [f"data.{'shards' if is_shard_set(cache) else 'cache'}={cache}"]
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

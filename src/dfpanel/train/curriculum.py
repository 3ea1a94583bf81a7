"""Staged training: FF++ -> Celeb-DF -> DFDC, and DFDC itself chunk by chunk.

Each stage starts from the previous stage's best weights (only the model carries over; the optimizer
starts fresh unless the stage sets `carry_optimizer: true`). A chunked stage trains its chunks in the
order the config gives, or `chunk_order: auto` = easiest first by the incoming weights' loss on a
sample of each chunk. `progress.json` in the stage folder records the order and finished chunks, so a
re-run continues at the chunk (and, from its last.ckpt, the step) where it stopped.

A stage counts as finished when its folder holds result.json; only then does the next stage start
from its weights. A time limit (`TimeLimit`) is for the whole curriculum: each stage gets what is
left (nothing left: its fit stops as it starts), and when it runs out the stage stops unfinished
(TimeLimitReached) and no later stage starts.
`resume_from` is an earlier session's (read-only) output: its OUT/<specialist>/ is copied into
this OUT first (`dfpanel.train.previous`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from dfpanel.errors import ConfigError, DataError
from dfpanel.extract.shards import is_shard_set
from dfpanel.train.chunk_cache import ChunkBudget
from dfpanel.train.chunks import PROGRESS_FILE
from dfpanel.train.config import load_stage_config
from dfpanel.train.limits import TimeLimit
from dfpanel.train.previous import check_previous_run, holds_run, take_over
from dfpanel.train.run import RESULT_FILE, free_memory, last_checkpoint, read_result
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
    cache: str | None,
    out: str | Path,
    stages: Sequence[str] = STAGES,
    preset: str = "tiny",
    manifests: dict[str, str] | None = None,
    overrides: Sequence[str] = (),
    init_from: str | None = None,
    init_sha256: str | None = None,
    progress: bool = True,
    time_limit: TimeLimit | None = None,
    resume_from: str | Path | None = None,
    budget: ChunkBudget | None = None,
) -> list[dict]:
    """Run `stages` in order into OUT/<specialist>/<stage>/, each initialised from the one before.
    `cache`: a face-track cache, or a shard set to stream (a URL, or a folder holding shards.json).
    A finished stage (result.json) is skipped; an interrupted one resumes from its last.ckpt.
    `budget` applies to the chunked stage (DFDC): its chunks are extracted from its manifest."""
    out = Path(out)
    cfgs = {}
    for stage in stages:
        extra = [f"data.{'shards' if is_shard_set(cache) else 'cache'}={cache}"] if cache else []
        if manifests and manifests.get(stage):
            extra.append(f"data.manifest={manifests[stage]}")
        cfgs[stage] = load_stage_config(preset_name(specialist, stage, preset), [*overrides, *extra])
    if budget is not None and not any(c.data.chunked for c in cfgs.values()):
        raise ConfigError(f"--max-cache-gb is for the chunked stage (dfdc), which --stages {','.join(stages)} leaves out")
    for stage, cfg in cfgs.items():
        if not cache and not (budget is not None and cfg.data.chunked):
            raise ConfigError(f"stage {stage}: no face-track cache given; pass --data CACHE")
    if resume_from is not None:
        _take_over_previous(Path(resume_from), out, specialist, cfgs)

    results: list[dict] = []
    prev: dict | None = None
    prev_dir: Path | None = None
    for stage, cfg in cfgs.items():
        if prev is not None:
            cfg.init_from, cfg.init_sha256 = prev["weights"], prev["sha256"]
        elif init_from:
            cfg.init_from, cfg.init_sha256 = init_from, init_sha256
        stage_dir = out / specialist / stage
        if (stage_dir / RESULT_FILE).is_file():
            result = read_result(stage_dir)
            log.info("stage %s already finished (%s)", stage, stage_dir)
        else:
            resume = last_checkpoint(stage_dir).is_file() or (stage_dir / PROGRESS_FILE).is_file()
            opt_state = _optimizer_state(prev_dir) if cfg.carry_optimizer and prev_dir is not None else None
            result = train_stage(cfg, stage_dir, resume=resume, progress=progress, optimizer_state=opt_state,
                                 time_limit=time_limit, budget=budget if cfg.data.chunked else None)
        results.append(result)
        prev, prev_dir = result, stage_dir
        free_memory()
    return results


def _take_over_previous(src: Path, out: Path, specialist: str, cfgs: dict) -> None:
    """Check that `src` (an earlier session's OUT) holds this specialist's curriculum, then copy its
    OUT/<specialist>/ into `out` (unless `out` already holds one)."""
    if not src.is_dir():
        raise DataError(f"--resume-from {src}: no such folder; give the earlier session's --out (read-only is fine)")
    mine = src / specialist
    found = [stage for stage in cfgs if holds_run(mine / stage)]
    if not found:
        others = sorted(p.name for p in src.iterdir() if p.is_dir() and any(holds_run(q) for q in p.iterdir() if q.is_dir()))
        has = f" (it holds runs of {', '.join(others)})" if others else ""
        raise DataError(f"--resume-from {src}: holds no run of specialist {specialist} for stages {', '.join(cfgs)} "
                        f"(no {specialist}/<stage>/ with run records){has}; give the --out of the earlier session")
    for stage in found:
        check_previous_run(mine / stage, cfgs[stage].name)
    take_over(mine, out / specialist)


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

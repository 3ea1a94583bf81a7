"""One stage, chunked (DFDC) or not: the entry point `dfpanel train` and the curriculum use."""

from __future__ import annotations

from dfpanel.errors import ConfigError
from dfpanel.train.chunk_cache import ChunkBudget
from dfpanel.train.chunks import train_chunked
from dfpanel.train.config import StageConfig
from dfpanel.train.limits import TimeLimit
from dfpanel.train.run import fit_stage


def train_stage(cfg: StageConfig, out_dir, resume: bool = False, *, progress: bool = True,
                time_limit: TimeLimit | None = None, budget: ChunkBudget | None = None,
                optimizer_state: dict | None = None) -> dict:
    """Train one stage into `out_dir`; returns its metrics and weight path (see `fit_stage`).
    `time_limit`: stop (TimeLimitReached, not finished) when it runs out; `budget`: a chunked stage
    extracts each chunk from its manifest under that disk budget (`dfpanel.train.chunk_cache`)."""
    if cfg.data.chunked:
        return train_chunked(cfg, out_dir, resume=resume, progress=progress, optimizer_state=optimizer_state,
                             time_limit=time_limit, budget=budget)
    if budget is not None:
        raise ConfigError(f"--max-cache-gb: {cfg.source or cfg.name} is not a chunked stage (data.chunked: false); "
                          "the disk budget is for the DFDC stage")
    return fit_stage(cfg, out_dir, resume=resume, optimizer_state=optimizer_state, progress=progress,
                     time_limit=time_limit)

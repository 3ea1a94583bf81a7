"""One stage, chunked (DFDC) or not: the entry point `dfpanel train` and the curriculum use."""

from __future__ import annotations

from dfpanel.train.chunks import train_chunked
from dfpanel.train.config import StageConfig
from dfpanel.train.run import fit_stage


def train_stage(cfg: StageConfig, out_dir, resume: bool = False, *, progress: bool = True) -> dict:
    """Train one stage into `out_dir`; returns its metrics and weight path (see `fit_stage`)."""
    if cfg.data.chunked:
        return train_chunked(cfg, out_dir, resume=resume, progress=progress)
    return fit_stage(cfg, out_dir, resume=resume, progress=progress)

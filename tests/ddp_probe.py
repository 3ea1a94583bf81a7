"""`python tests/ddp_probe.py <dfpanel args>`: the dfpanel CLI with a few functions wrapped to record,
per process, what it trained on; for DDP tests (no tests here).

Lightning's DDP launcher re-runs this same script for every other rank, so each rank records too.
Each record is one JSON line appended to $DFPANEL_PROBE_LOG:
  {"what": "fit", "rank", "dir"}                       a fit_stage call begins (one per chunk)
  {"what": "fit_end", "rank", "dir", "step", "sha256"}  it returned
  {"what": "draw", "rank", "dir", "epoch", "list"}     the epoch's sampler draw a DistributedSamplerWrapper shards
  {"what": "batch", "rank", "dir", "epoch", "step", "index", "chunks"}   a training batch: sample indices, chunks of their videos
  {"what": "save_weights", "rank", "path"}             a weights file written
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

LOG = os.environ.get("DFPANEL_PROBE_LOG")
_current = {"dir": None, "epoch": None}


def _rank() -> int:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0)) or 0)


def record(what: str, **fields) -> None:
    line = json.dumps({"what": what, "rank": _rank(), "pid": os.getpid(), **fields}) + "\n"
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def install() -> None:
    from lightning.fabric.utilities import distributed as fdist

    import dfpanel.train.chunks as chunks
    import dfpanel.weights.io as wio
    from dfpanel.train.module import SpecialistModule

    real_fit = chunks.fit_stage

    def fit_stage(cfg, out_dir, **kw):
        _current["dir"] = Path(out_dir).name
        record("fit", dir=_current["dir"])
        result = real_fit(cfg, out_dir, **kw)
        record("fit_end", dir=Path(out_dir).name, step=result["global_step"], sha256=result["sha256"])
        return result

    chunks.fit_stage = fit_stage

    real_reset = fdist._DatasetSamplerWrapper.reset

    def reset(self):
        real_reset(self)
        record("draw", dir=_current["dir"], epoch=_current["epoch"], list=[int(i) for i in self._sampler_list])

    fdist._DatasetSamplerWrapper.reset = reset

    real_epoch_start = getattr(SpecialistModule, "on_train_epoch_start", None)

    def on_train_epoch_start(self):
        _current["epoch"] = int(self.current_epoch)
        if real_epoch_start is not None:
            real_epoch_start(self)

    SpecialistModule.on_train_epoch_start = on_train_epoch_start

    real_step = SpecialistModule.training_step

    def training_step(self, batch, batch_idx):
        _, _, meta = batch
        ds = self.trainer.datamodule.train_set
        base = getattr(ds, "base", ds)
        chunks_seen = sorted({base.rows[int(v)].chunk for v in meta["video"]})
        record("batch", dir=_current["dir"], epoch=int(self.current_epoch), step=int(self.global_step),
               index=[int(i) for i in meta["index"]], chunks=chunks_seen)
        return real_step(self, batch, batch_idx)

    SpecialistModule.training_step = training_step

    real_save = wio.save_weights

    def save_weights(model, path, *a, **kw):
        record("save_weights", path=str(path))
        return real_save(model, path, *a, **kw)

    wio.save_weights = save_weights


if __name__ == "__main__":
    install()
    from dfpanel.cli import main

    sys.exit(main(sys.argv[1:]))

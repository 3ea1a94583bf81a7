"""A chunked stage (DFDC): chunks trained one after another, each from the previous chunk's best weights.

The chunks run in the order the config gives, or `chunk_order: auto` = easiest first by the incoming
weights' loss on a sample of each chunk. `progress.json` in the stage folder records the order and
finished chunks, so a re-run continues at the chunk (and, from its last.ckpt, the step) where it stopped.
With a disk budget (`ChunkBudget`, `--max-cache-gb`) each chunk is extracted from the manifest just
before it trains and its cache deleted once it is done (`dfpanel.train.chunk_cache`).
Files are found relative to the stage folder, never through paths recorded in its JSON files, so a
stage folder copied elsewhere (`--resume-from`) goes on where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch

from dfpanel.errors import ConfigError, DataError
from dfpanel.train.chunk_cache import (
    CACHE_DIR,
    PROBE_DIR,
    ChunkBudget,
    ChunkExtraction,
    budget_config,
    drop_cache,
)
from dfpanel.train.config import StageConfig
from dfpanel.train.limits import TimeLimit
from dfpanel.train.run import (
    RESULT_FILE,
    _write_json,
    fit_stage,
    free_memory,
    is_launcher_rank_zero,
    last_checkpoint,
    read_result,
)
from dfpanel.weights.fetch import WEIGHTS_FILE, resolve_init, sha256_of
from dfpanel.weights.io import sidecar_path

log = logging.getLogger(__name__)

PROGRESS_FILE = "progress.json"

def available_chunks(cfg: StageConfig) -> list[int]:
    from dfpanel.train.datamodule import stage_rows

    rows = stage_rows(cfg, cfg.data.train_split)
    return sorted({r.chunk for r in rows if r.chunk is not None})


def chunk_losses(cfg: StageConfig, chunks: Sequence[int], model) -> dict[int, float]:
    """Mean BCE of `model` on `chunk_sample` training samples of each chunk (no augmentation). Streaming,
    they are drawn from as few of the chunk's shards as hold them (`few_shard_sample`), not from all."""
    from torch.nn.functional import binary_cross_entropy_with_logits
    from torch.utils.data import DataLoader, Subset

    from dfpanel.train.datamodule import data_source, stage_rows
    from dfpanel.views.samples import specialist_dataset
    from dfpanel.views.stream import ShardStreamDataset

    device = "cuda" if torch.cuda.is_available() and cfg.trainer.accelerator != "cpu" else "cpu"
    model = model.to(device).eval()
    losses: dict[int, float] = {}
    source = data_source(cfg)
    for chunk in chunks:
        rows = stage_rows(cfg, cfg.data.train_split, chunks=[chunk], source=source)
        if cfg.data.shards:  # streaming: a random sample of the chunk from one or two of its shards
            ds = specialist_dataset(model, cfg.data.shards, rows, per_video=cfg.data.frames_per_video, open_entry=source.layout)
            stream = ShardStreamDataset(ds, source, mode="all", batch_size=cfg.data.batch_size)
            subset = stream.few_shard_sample(cfg.data.chunk_sample, cfg.trainer.seed + chunk)
            loader = DataLoader(ShardStreamDataset(ds, source, mode="all", batch_size=cfg.data.batch_size, subset=subset),
                                batch_size=cfg.data.batch_size)
        else:
            ds = specialist_dataset(model, cfg.data.cache, rows, per_video=cfg.data.frames_per_video)
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
        from dfpanel.weights.io import load_weights

        state, _ = load_weights(init_path, expected_specialist=cfg.specialist)
        model.load_state_dict(state, strict=cfg.init_strict)
    losses = chunk_losses(cfg, chunks, model)
    order = sorted(chunks, key=lambda c: (losses[c], list(chunks).index(c)))
    del model
    free_memory()
    return order, losses


RANK_WAIT_S = 3600.0  # how long another rank waits for rank 0's progress.json (rank 0 may be ordering chunks)


def wait_for_progress(prog_path: Path, timeout_s: float | None = None, poll_s: float = 1.0) -> dict:
    """progress.json as rank 0 wrote it, waiting for it to appear (with its chunk order)."""
    import time

    timeout_s = RANK_WAIT_S if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            state = json.loads(prog_path.read_text())
            if state.get("order") is not None:
                return state
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        if time.monotonic() > deadline:
            raise DataError(f"{prog_path}: rank 0 did not write the chunk order within {timeout_s:.0f} s; "
                            "see rank 0's output for why it stopped")
        time.sleep(poll_s)


def chunk_dir(out_dir: Path, chunk: int) -> Path:
    return Path(out_dir) / f"chunk_{chunk}"


def train_chunked(
    cfg: StageConfig, out_dir, *, resume: bool = False, progress: bool = True, optimizer_state: dict | None = None,
    time_limit: TimeLimit | None = None, budget: ChunkBudget | None = None,
) -> dict:
    """Train a chunked stage: OUT/chunk_<k>/ per chunk, each from the previous chunk's best weights;
    OUT/best.safetensors is the last chunk's best, copied there (with result.json) once all are done.
    `time_limit` passes to each chunk; `budget` extracts each chunk into OUT/chunk_<k>/cache first."""
    out_dir = Path(out_dir)
    if budget is not None:
        cfg = budget_config(cfg)
    prog_path = out_dir / PROGRESS_FILE
    if not is_launcher_rank_zero():
        # Another DDP rank (a process Lightning's launcher started for --devices N, or a task of
        # srun/torchrun): rank 0 alone decides the chunk order and keeps progress.json. This rank
        # follows that file, so every rank trains the same chunks in the same order (an order each
        # rank computed itself could differ: near-equal losses sort either way).
        if resume and not prog_path.is_file() and (out_dir / RESULT_FILE).is_file():
            return json.loads((out_dir / RESULT_FILE).read_text())
        state = wait_for_progress(prog_path)
    elif prog_path.is_file():
        if not resume:
            raise ConfigError(f"{out_dir}: already holds a run; pass --resume to continue it or choose another --out")
        state = json.loads(prog_path.read_text())
    else:
        if resume and not (out_dir / RESULT_FILE).is_file():
            raise ConfigError(f"{out_dir}: nothing to resume (no {PROGRESS_FILE}); drop --resume to start it")
        if resume:
            return read_result(out_dir)
        state = {"name": cfg.name, "specialist": cfg.specialist, "stage": cfg.stage,
                 "order": None, "done": [], "results": {}, "losses": None}

    def save_state() -> None:
        if is_launcher_rank_zero():
            out_dir.mkdir(parents=True, exist_ok=True)
            _write_json(prog_path, state)

    incoming = None
    if cfg.init_from:
        incoming = resolve_init(cfg.init_from, sha256=cfg.init_sha256, runs_root=out_dir.parent, progress=progress)
    source = ChunkExtraction(cfg, budget, incoming=incoming, progress=progress) if budget is not None else None
    if state["order"] is None:
        present = source.available_chunks() if source is not None else available_chunks(cfg)
        wanted = list(cfg.data.chunks) if cfg.data.chunks is not None else present
        missing = [c for c in wanted if c not in present]
        where = cfg.data.manifest if source is not None else (cfg.data.cache or cfg.data.shards)
        if missing:
            log.warning("chunks %s have no training videos in %s; skipping them", missing, where)
        chunks = [c for c in wanted if c in present]
        if not chunks:
            raise DataError(f"{where}: none of the chunks {wanted} has training videos; check data.chunks")
        if cfg.data.chunk_order == "auto" and source is not None and len(chunks) == 1:
            state["order"] = chunks  # one chunk: nothing to order, no probe to extract
        elif cfg.data.chunk_order == "auto" and source is not None:
            probe = out_dir / PROBE_DIR
            source.extract_into(source.probe_videos(chunks), probe, "the chunk-order probe", time_limit=time_limit)
            probe_cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, cache=str(probe), max_videos=None))
            state["order"], state["losses"] = auto_chunk_order(probe_cfg, chunks, incoming)
        elif cfg.data.chunk_order == "auto":
            state["order"], state["losses"] = auto_chunk_order(cfg, chunks, incoming)
        else:
            state["order"] = chunks
        save_state()
    if source is not None:
        drop_cache(out_dir / PROBE_DIR)

    init_path, init_sha = (str(incoming), sha256_of(incoming)) if incoming is not None else (None, None)
    result: dict | None = None
    for i, chunk in enumerate(state["order"]):
        key = str(chunk)
        here = chunk_dir(out_dir, chunk)
        if chunk in state["done"]:
            result = {**state["results"][key], "run_dir": str(here), "weights": str(here / WEIGHTS_FILE)}
            init_path, init_sha = result["weights"], result["sha256"]
            if source is not None:
                drop_cache(here / CACHE_DIR)  # done, but stopped before its cache was dropped
            continue
        chunk_cfg = dataclasses.replace(cfg, init_from=init_path, init_sha256=init_sha, name=f"{cfg.name}_chunk{chunk}")
        if source is not None:
            extracted = state.setdefault("extracted", {})

            def on_batch(n_done: int, key=key) -> None:
                extracted[key] = n_done
                save_state()

            cache = source.extract_into(source.chunk_videos(chunk), here / CACHE_DIR, f"chunk {chunk}",
                                        start=extracted.get(key, 0), time_limit=time_limit, on_batch=on_batch)
            chunk_cfg = dataclasses.replace(chunk_cfg, data=dataclasses.replace(cfg.data, cache=str(cache)))
        result = fit_stage(
            chunk_cfg,
            here,
            resume=last_checkpoint(here).is_file(),
            chunk=chunk,
            optimizer_state=optimizer_state if i == 0 else None,
            progress=progress,
            time_limit=time_limit,
        )
        state["done"].append(chunk)
        state["results"][key] = result
        save_state()
        if source is not None:
            drop_cache(here / CACHE_DIR)
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

"""Train one stage (one StageConfig) with a lightning.Trainer.

RUN_DIR/
  run.json                  what this run is: config, parent weights sha256, data hash
  best.safetensors (+ .json sidecar via dfpanel.weights.io)   best val video AUC so far
  checkpoints/last.ckpt     Lightning state for `--resume` only (every N steps, each validation, at the end)
  logs/csv/version_N, logs/tb   CSVLogger (one version per start or resume) and TensorBoardLogger
  result.json               written when the stage has finished
A chunked stage (DFDC) runs one fit per chunk (`dfpanel.train.chunks`); `dfpanel.train.stage` picks.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import time
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, Timer
from lightning.pytorch.utilities.exceptions import SIGTERMException

from dfpanel.atomic import atomic_write
from dfpanel.errors import ConfigError, DfpanelError
from dfpanel.train.config import StageConfig
from dfpanel.train.limits import TimeLimit, TimeLimitReached
from dfpanel.weights.fetch import WEIGHTS_FILE, resolve_init, sha256_of

log = logging.getLogger(__name__)
# Lightning announces hardware and tips at INFO through its own handler; our progress bars and tables say
# what matters, so keep its warnings only (and no second copy through the root handler).
for _name in ("lightning.pytorch", "lightning.fabric"):
    logging.getLogger(_name).setLevel(logging.WARNING)
    logging.getLogger(_name).propagate = False

class TrainingInterrupted(DfpanelError):
    """The run was stopped by SIGTERM (a scheduler's preemption, `kill`): checkpoint kept, exit 143."""

    exit_code = 128 + 15


RESULT_FILE = "result.json"
RUN_FILE = "run.json"
MONITOR = "val_auc"


RANK_VARS = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")


def is_launcher_rank_zero() -> bool:
    """True in the global rank-0 process, also before DDP starts: Lightning's launcher, torchrun and
    SLURM give every other process a non-zero rank in one of these variables."""
    return all(int(os.environ.get(var, 0) or 0) == 0 for var in RANK_VARS)


def view_of(model):
    """The specialist's view as a picklable function when it offers one (no model copy per worker)."""
    return model.view_fn() if hasattr(model, "view_fn") else model.view


def last_checkpoint(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints" / "last.ckpt"


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def fit_stage(
    cfg: StageConfig,
    out_dir,
    *,
    resume: bool = False,
    chunk: int | None = None,
    optimizer_state: dict | None = None,
    progress: bool = True,
    time_limit: TimeLimit | None = None,
) -> dict:
    """Train `cfg` (optionally on one DFDC chunk) into `out_dir`. Returns a dict with `weights`,
    `sha256`, `metrics` (best val_auc and friends), `global_step`, `run_dir`.

    With `time_limit`, what is left of it is Lightning's `max_time`; when it runs out, last.ckpt holds
    the step reached, run.json records the stop, no result.json is written and `TimeLimitReached` is
    raised (the run is not finished: `resume=True` continues it)."""
    from dfpanel.models.specialists.base import create_specialist
    from dfpanel.train.datamodule import CacheDataModule
    from dfpanel.train.module import SpecialistModule
    from dfpanel.views.samples import clip_len_of
    from dfpanel.weights.io import load_into, load_weights

    out_dir = Path(out_dir)
    last = last_checkpoint(out_dir)
    if is_launcher_rank_zero():
        if resume and not last.is_file():
            if (out_dir / RESULT_FILE).is_file():
                return read_result(out_dir)  # finished before
            raise ConfigError(f"{out_dir}: nothing to resume (no checkpoints/last.ckpt); drop --resume to start it")
        if not resume and (last.is_file() or (out_dir / WEIGHTS_FILE).is_file()):
            raise ConfigError(f"{out_dir}: already holds a run; pass --resume to continue it or choose another --out")
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)

    model_kwargs = cfg.model.kwargs()
    if cfg.init_from or resume:
        model_kwargs["pretrained"] = False  # weights come from init_from / last.ckpt: fetch no backbone
    model = create_specialist(cfg.specialist, **model_kwargs)
    run_info = _run_info(out_dir, cfg, resume)
    if cfg.init_from and not resume:
        path = resolve_init(cfg.init_from, sha256=cfg.init_sha256, runs_root=out_dir.parent, progress=progress)
        state, parent_sidecar = load_weights(path, expected_specialist=cfg.specialist, expected_sha256=cfg.init_sha256)
        run_info["parent_provenance"] = parent_sidecar.get("provenance")  # inherited: what the parent learned from
        if cfg.init_strict:
            load_into(model, state, source=str(path))
        else:
            model.load_state_dict(state, strict=False)
        run_info["parent_sha256"] = sha256_of(path)
        run_info["init_from"] = str(path)

    dm = CacheDataModule(cfg, view_of(model), model.sample_kind, chunk=chunk, clip_len=clip_len_of(model),
                         gate=model.gate_fn() if hasattr(model, "gate_fn") else None,
                         mask_input=getattr(model, "mask_input", None) if getattr(model, "mask_head", None) is not None else None,
                         pseudofakes=getattr(model, "pseudofakes", ()))
    if cfg.init_from and not resume and parent_sidecar.get("input_spec") is not None:
        from dfpanel.weights.folder import sidecar_input_spec

        differs = sidecar_input_spec(parent_sidecar, path).describe_difference(dm.input_spec, sampling=False)
        if differs:  # fine-tuning on other views: allowed, but the parent learned what it no longer sees
            log.warning("%s: parent weights were trained on a cache extracted otherwise than %s (%s)",
                        out_dir, cfg.data.cache or cfg.data.shards, differs)
    module = SpecialistModule(cfg.specialist, model_kwargs, asdict(cfg.optim), pos_weight=dm.pos_weight, model=model,
                              mask_weight=cfg.pseudofakes.mask_weight)
    if optimizer_state is not None and not resume:
        module.carried_optimizer_state = optimizer_state
    run_info.update(manifest_hash=dm.data_hash, pos_weight=dm.pos_weight, chunk=chunk,
                    n_train_samples=len(dm.train_set), n_val_samples=len(dm.val_set),
                    n_train_pseudofakes=len(getattr(dm.train_set, "sources", [])),
                    n_val_pseudofakes=len(getattr(dm.val_set, "sources", [])),
                    input_spec=dm.input_spec.to_dict())
    if is_launcher_rank_zero():
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_json(out_dir / RUN_FILE, run_info)

    sidecar = {
        "stage": cfg.stage,
        "config": cfg.to_dict(),
        "manifest_hash": run_info["manifest_hash"],
        "parent_sha256": run_info.get("parent_sha256"),
        "chunk": chunk,
        # The training cache's InputSpec: every setting that shaped the pixels and audio these
        # weights learned from. `detect` extracts with it; `eval` and `panel fit` check caches against it.
        "input_spec": dm.input_spec.to_dict(),
        "provenance": stage_provenance(cfg, dm, chunk, run_info),
    }
    best_cb = BestWeights(out_dir / WEIGHTS_FILE, sidecar)
    resume_cb = ResumeCheckpoint(last, cfg.trainer.checkpoint_every_n_steps)
    # What is left of the limit, maybe nothing: then Lightning's Timer stops the fit as it starts. The
    # Timer decides on rank zero and tells the others, so DDP processes stop together.
    trainer = build_trainer(cfg, out_dir, [best_cb, resume_cb], progress,
                            early_stopping=dm.val_one_class is None,  # no AUC to stop on with one class
                            max_time=None if time_limit is None else time_limit.remaining())
    at_limit = TimeLimitCheckpoint.attach(trainer, resume_cb)
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resume else None)
    except SIGTERMException:
        # Lightning turns SIGTERM into a SystemExit with no code: the run would end with exit 0 and no
        # result, as if it had finished. Keep the step reached for --resume and say what happened.
        try:
            _save_atomic(trainer, last)
        except Exception:  # noqa: BLE001 - the periodic last.ckpt is still there
            log.warning("%s: could not save the step reached at SIGTERM; --resume starts from the last checkpoint", last)
        raise TrainingInterrupted(
            f"{out_dir}: stopped by SIGTERM at step {trainer.global_step}; run the same command with --resume to continue"
        ) from None
    if at_limit is not None and at_limit.stopped_training(trainer):
        if not at_limit.saved:  # stopped as it started: the state is the one it started from
            _save_atomic(trainer, last)
        stop = {"reason": "time_limit", "time_limit": time_limit.text, "global_step": int(trainer.global_step),
                "epoch": int(trainer.current_epoch), "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if is_launcher_rank_zero():
            _write_json(out_dir / RUN_FILE, {**run_info, "stopped": stop})
        raise TimeLimitReached(
            f"{out_dir}: stopped for the time limit ({time_limit.text}) at step {trainer.global_step}, "
            f"not finished (checkpoints/last.ckpt saved)", run_dir=out_dir)
    _save_atomic(trainer, last)
    if best_cb.best_score is None:  # stopped before any validation (tiny max_steps): score what we have
        trainer.validate(module, datamodule=dm, verbose=False)  # BestWeights saves from its hook

    weights = out_dir / WEIGHTS_FILE
    result = {
        "run_dir": str(out_dir),
        "weights": str(weights),
        "sha256": sha256_of(weights) if weights.is_file() else None,
        "metrics": best_cb.best_metrics,
        "global_step": int(trainer.global_step),
        "epochs": int(trainer.current_epoch),
        "world_size": int(trainer.world_size),
        "stage": cfg.stage,
        "specialist": cfg.specialist,
        "chunk": chunk,
    }
    if trainer.is_global_zero:
        _write_json(out_dir / RESULT_FILE, result)
    return result


def read_result(run_dir) -> dict:
    """A finished run's result.json, its paths pointing into `run_dir` wherever the run was written
    (a run folder copied from another machine or session stays usable)."""
    run_dir = Path(run_dir)
    result = json.loads((run_dir / RESULT_FILE).read_text())
    result.update(run_dir=str(run_dir), weights=str(run_dir / WEIGHTS_FILE))
    return result


def stage_provenance(cfg: StageConfig, dm, chunk: int | None, run_info: dict) -> dict:
    """What these weights learned from: the parent's chain (init_from) + the datasets of this run."""
    from dfpanel.weights.sidecar import chain_provenance, dataset_entries, read_sidecar

    entries = dataset_entries(dm.train_rows + dm.val_rows, stage=cfg.stage, chunk=chunk,
                              manifest_hash=dm.data_hash if cfg.data.manifest else None)
    unknown = [e["name"] for e in entries if e["synthetic"] is None]
    if unknown:
        log.warning("%s: the cache rows of %s do not say whether their videos are synthetic (extracted before "
                    "dfpanel recorded it); these weights will report their training data as unknown. Re-run "
                    "`dfpanel index` and `dfpanel extract` into a new cache to record it",
                    cfg.data.cache or cfg.data.shards, ", ".join(unknown))
    has_parent = run_info.get("parent_sha256") is not None
    if has_parent and "parent_provenance" not in run_info:  # a run.json from before provenance: re-read the parent
        parent = Path(run_info.get("init_from") or "")
        same = parent.is_file() and sha256_of(parent) == run_info["parent_sha256"]
        run_info["parent_provenance"] = read_sidecar(parent, missing_ok=True).get("provenance") if same else None
    return chain_provenance({"provenance": run_info.get("parent_provenance")}, entries, has_parent=has_parent)


def _run_info(out_dir: Path, cfg: StageConfig, resume: bool) -> dict:
    if resume and (out_dir / RUN_FILE).is_file():
        info = json.loads((out_dir / RUN_FILE).read_text())
        info["config"] = cfg.to_dict()
        info.pop("stopped", None)  # going on
        return info
    return {"config": cfg.to_dict(), "parent_sha256": None, "init_from": None}


def resolve_precision(requested: str, on_gpu: bool) -> str:
    if not on_gpu:
        if requested not in ("auto", "32", "32-true"):
            log.warning("precision %s needs a GPU; training in 32-bit on CPU", requested)
        return "32-true"
    if requested == "auto":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true" if requested == "32" else requested


def build_trainer(cfg: StageConfig, out_dir: Path, callbacks: list, progress: bool, *, early_stopping: bool = True,
                  max_time: float | None = None) -> L.Trainer:
    from lightning.pytorch.loggers import CSVLogger

    t = cfg.trainer
    on_gpu = t.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    devices = t.devices
    strategy = t.strategy
    many = (isinstance(devices, int) and devices > 1) or isinstance(devices, list) and len(devices) > 1 or t.num_nodes > 1
    if strategy == "auto" and many:
        strategy = "ddp"  # DDP is the multi-GPU / multi-node path (gloo on CPU)
    # CSV: a new version folder per (re)start, since CSVLogger rewrites an existing one.
    loggers = [CSVLogger(out_dir / "logs", name="csv")]
    try:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(out_dir, name="logs", version="tb", default_hp_metric=False))
    except ModuleNotFoundError:  # tensorboard not installed: CSV only
        pass
    callbacks = list(callbacks)
    if early_stopping and t.early_stopping_patience > 0:
        callbacks.append(EarlyStopping(monitor=MONITOR, mode="max", patience=t.early_stopping_patience, check_finite=False))
    if progress:
        callbacks.append(_progress_bar())
    trainer = L.Trainer(
        default_root_dir=out_dir,
        accelerator=t.accelerator if t.accelerator != "auto" else ("gpu" if on_gpu else "cpu"),
        devices=devices,
        num_nodes=t.num_nodes,
        strategy=strategy,
        # The paired batch sampler splits its batches across DDP ranks itself (a DistributedSampler
        # cannot wrap a batch sampler); validation then runs whole on every rank, which torchmetrics syncs.
        use_distributed_sampler=not cfg.data.paired,
        precision=resolve_precision(str(t.precision), on_gpu),
        max_epochs=t.max_epochs,
        max_steps=t.max_steps,
        accumulate_grad_batches=t.accumulate_grad_batches,
        gradient_clip_val=cfg.optim.grad_clip,
        val_check_interval=t.val_check_interval,
        limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches,
        log_every_n_steps=t.log_every_n_steps,
        num_sanity_val_steps=t.num_sanity_val_steps,
        deterministic=t.deterministic,
        enable_checkpointing=False,  # ResumeCheckpoint + BestWeights below
        enable_progress_bar=progress,
        enable_model_summary=False,
        logger=loggers,
        callbacks=callbacks,
        max_time=None if max_time is None else timedelta(seconds=max_time),
    )
    if max_time is not None:
        _count_this_session_only(trainer)
    return trainer


def _timer(trainer: L.Trainer) -> Timer | None:
    return next((cb for cb in trainer.callbacks if isinstance(cb, Timer)), None)


def _count_this_session_only(trainer: L.Trainer) -> None:
    """`Trainer(max_time=...)` adds Lightning's Timer, which on --resume restores the training time that
    last.ckpt recorded and counts it against max_time: a second session with the same --time-limit
    would stop at once. The limit is this command's wall time, so the Timer keeps none from the
    checkpoint (it still records its own in the checkpoints it saves)."""
    timer = _timer(trainer)
    if timer is not None:
        timer.load_state_dict = lambda state_dict: None


def _progress_bar():
    from lightning.pytorch.callbacks import RichProgressBar

    class ProgressBar(RichProgressBar):
        def get_metrics(self, trainer, pl_module):
            metrics = super().get_metrics(trainer, pl_module)
            metrics.pop("v_num", None)  # the logger's version folder says nothing useful here
            return metrics

    return ProgressBar()


def _save_atomic(trainer: L.Trainer, path: Path) -> None:
    """trainer.save_checkpoint to a temp name, then rename: a kill mid-write keeps the previous one."""
    tmp = path.with_name(path.name + ".tmp")
    trainer.save_checkpoint(tmp)  # every rank calls; rank zero writes
    if trainer.is_global_zero:
        os.replace(tmp, path)
    trainer.strategy.barrier("dfpanel_last_ckpt")


def _write_json(path: Path, data: dict) -> None:
    atomic_write(path, json.dumps(data, indent=1, default=str))


class ResumeCheckpoint(Callback):
    """Keeps RUN_DIR/checkpoints/last.ckpt fresh: every N optimizer steps and after each validation."""

    def __init__(self, path: Path, every_n_steps: int):
        self.path = Path(path)
        self.every = every_n_steps
        self._saved_step = -1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every > 0 and step > 0 and step % self.every == 0 and step != self._saved_step:
            self._save(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._save(trainer)

    def _save(self, trainer) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _save_atomic(trainer, self.path)
        self._saved_step = trainer.global_step


class TimeLimitCheckpoint(Callback):
    """Saves last.ckpt at the batch where Lightning's Timer (`Trainer(max_time=...)`) stopped training.

    It is appended after the Timer, so it sees the Timer's decision in the same `on_train_batch_end`.
    Saving there, mid-epoch, is what lets --resume go on with the rest of the epoch: once `fit`
    returns, Lightning counts a stopped epoch as completed, and a checkpoint saved then would skip the
    batches the epoch had left."""

    def __init__(self, resume_cb: ResumeCheckpoint, timer: Timer):
        self.resume_cb = resume_cb
        self.timer = timer
        self.saved = False

    @classmethod
    def attach(cls, trainer: L.Trainer, resume_cb: ResumeCheckpoint) -> "TimeLimitCheckpoint | None":
        timer = _timer(trainer)
        if timer is None:
            return None
        cb = cls(resume_cb, timer)
        trainer.callbacks.append(cb)
        return cb

    def _time_is_up(self, trainer) -> bool:
        left = self.timer.time_remaining()
        return bool(trainer.should_stop) and left is not None and left <= 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._time_is_up(trainer) and not self.saved:
            self.resume_cb._save(trainer)
            self.saved = True

    def stopped_training(self, trainer) -> bool:
        """After fit: did the time limit end it before the run's own end (max_epochs/max_steps, early stop)?"""
        if not self._time_is_up(trainer):
            return False
        if trainer.max_steps is not None and 0 < trainer.max_steps <= trainer.global_step:
            return False
        early = trainer.early_stopping_callback
        if early is not None and early.stopped_epoch > 0:
            return False
        last_epoch_whole = trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        return not (last_epoch_whole and trainer.max_epochs is not None and trainer.current_epoch >= trainer.max_epochs)


TIE_BREAK = "val_frame_auc"


class BestWeights(Callback):
    """The 'ModelCheckpoint on val video AUC': each better `val_auc` rewrites best.safetensors (+ sidecar).
    A tie on video AUC goes to the better frame AUC: a small validation set (a few videos, or pseudo-fakes
    that are easy to tell from their reals) saturates at video AUC 1.0 within an epoch or two, and keeping
    the first 1.0 would keep an under-trained model. The best scores travel in last.ckpt, so a resumed run
    keeps comparing against them."""

    def __init__(self, path: Path, sidecar: dict):
        self.path = Path(path)
        self.sidecar = sidecar
        self.best_score: float | None = None
        self.best_tiebreak: float | None = None
        self.best_metrics: dict = {}

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or MONITOR not in trainer.callback_metrics:
            return
        score = float(trainer.callback_metrics[MONITOR])
        tiebreak = float(trainer.callback_metrics.get(TIE_BREAK, float("nan")))
        # NaN (one class in a partial validation, see train/metrics.py) never beats a real score, and
        # a real score always beats a NaN best, so best weights exist and the best is a real one.
        if self.best_score is not None and not math.isnan(self.best_score):
            better = score > self.best_score or (
                score == self.best_score and not math.isnan(tiebreak)
                and (self.best_tiebreak is None or math.isnan(self.best_tiebreak) or tiebreak > self.best_tiebreak))
            if not better:
                return
        self.best_score, self.best_tiebreak = score, tiebreak
        self.best_metrics = {k: (None if math.isnan(float(v)) else float(v))  # JSON has no NaN: undefined is null
                             for k, v in trainer.callback_metrics.items() if k.startswith("val")}
        self.best_metrics.update(global_step=int(trainer.global_step), epoch=int(trainer.current_epoch))
        if trainer.is_global_zero:
            from dfpanel.weights.io import save_weights

            save_weights(pl_module.model, self.path, {**self.sidecar, "metrics": self.best_metrics})

    def state_dict(self) -> dict:
        return {"best_score": self.best_score, "best_tiebreak": self.best_tiebreak, "best_metrics": self.best_metrics}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best_score = state_dict.get("best_score")
        self.best_tiebreak = state_dict.get("best_tiebreak")
        self.best_metrics = state_dict.get("best_metrics", {})


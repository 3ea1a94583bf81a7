"""`dfpanel train` (one stage from a preset or YAML file) and `dfpanel curriculum` (stages in order).

Both take the session options of machines lent for a while (docs/kaggle.md): `--time-limit`
(stop cleanly, exit 75, not finished), `--resume-from` (an earlier session's read-only output) and
`--max-cache-gb` (the DFDC stage extracted chunk by chunk under a disk budget).
"""

from __future__ import annotations

from pathlib import Path

import typer

from dfpanel.errors import ConfigError, DataError

STAGES = ("ffpp", "celebdf", "dfdc")


def _overrides(sets: list[str] | None, extra: list[str], devices: str | None, num_nodes: int | None) -> list[str]:
    out = list(sets or [])
    for arg in extra:
        if arg.startswith("-") or "=" not in arg:
            raise ConfigError(f"unexpected argument {arg!r}; config overrides look like key.sub=value")
        out.append(arg)
    if devices is not None:
        out.append(f"trainer.devices={devices}")
    if num_nodes is not None:
        out.append(f"trainer.num_nodes={num_nodes}")
    return out


def _quiet_lightning() -> None:
    """Lightning resets its loggers to INFO when imported (after the CLI set them) and warns about
    things the presets choose on purpose (few workers on CPU); keep the terminal for our progress."""
    import logging
    import warnings

    import lightning  # noqa: F401 - import first, so our levels win

    if logging.getLogger().level > logging.DEBUG:
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).setLevel(logging.WARNING)
    # A run resumed without --time-limit from a checkpoint saved under one: Lightning asks for the Timer
    # back, though nothing needs it (the time limit is per session, docs/kaggle.md).
    for message in (r".*does not have many workers.*", r".*isinstance\(treespec, LeafSpec\).*",
                    r".*Your `IterableDataset` has `__len__` defined.*",  # shard streams count it exactly (views.stream)
                    r".*callbacks used to create the checkpoint need to be provided.*\['Timer'\].*"):
        warnings.filterwarnings("ignore", message=message)


def _print_result(result: dict, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from dfpanel.train.run import is_launcher_rank_zero

    if not is_launcher_rank_zero():
        return
    table = Table(title=title)
    for col in ("run", "best val AUC (video)", "(frame)", "steps", "weights"):
        table.add_column(col)
    results = result if isinstance(result, list) else [result]
    for r in results:
        m = r.get("metrics") or {}
        table.add_row(
            Path(r["run_dir"]).name,
            _auc(m.get("val_auc")),
            _auc(m.get("val_frame_auc")),
            str(r.get("global_step", "")),
            str(r.get("weights", "")),
        )
    Console().print(table)


def _auc(value) -> str:
    """An AUC for the table; undefined (null: the val split held one class) says so."""
    return "undefined (one class)" if value is None else f"{value:.4f}"


TIME_LIMIT_HELP = ("Stop cleanly after this long (8h30m, 45m, 90s): last.ckpt and run state saved, recorded as "
                   "not finished, exit 75.")
RESUME_FROM_HELP = ("An earlier session's output (read-only is fine, e.g. /kaggle/input/...): copied into --out, "
                    "then resumed there.")
MAX_CACHE_HELP = ("DFDC stage: extract each chunk from the manifest just before it trains and delete its cache "
                  "after, keeping it under this many GB.")


def _session_options(time_limit: str | None, max_cache_gb: float | None, workers: int, device: str):
    """The parsed --time-limit (its clock starts now) and --max-cache-gb budget, or None."""
    from dfpanel.train.chunk_cache import ChunkBudget
    from dfpanel.train.limits import TimeLimit

    limit = TimeLimit.parse(time_limit)
    budget = None if max_cache_gb is None else ChunkBudget(max_cache_gb, workers=workers, device=device)
    return limit, budget


def _stopped(exc, how: str) -> None:
    """One line for a run the time limit stopped; exit 75 (EX_TEMPFAIL: try again later)."""
    from dfpanel.console import err_console

    err_console.print(f"[bold yellow]stopped:[/] {exc}; {how}", highlight=False, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def register(app: typer.Typer) -> None:
    @app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def train(
        ctx: typer.Context,
        config: str = typer.Option(..., "--config", "-c", help="Preset name (cm/ffpp, cm/tiny_ffpp) or YAML file."),
        data: str = typer.Option(None, "--data", help="Face-track cache (from `dfpanel extract`), or a shard set to "
                                 "stream from: a folder or URL holding shards.json (from `dfpanel cache pack`)."),
        manifest: Path = typer.Option(None, "--manifest", help="Only the videos in this manifest."),
        out: Path = typer.Option(None, "--out", help="Run folder (default: runs/<config name>)."),
        resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoints/last.ckpt."),
        sets: list[str] = typer.Option(None, "--set", help="Override a config key: --set optim.lr=1e-4 (repeatable)."),
        devices: str = typer.Option(None, "--devices", help="Devices per node (e.g. 4); >1 trains with DDP."),
        num_nodes: int = typer.Option(None, "--num-nodes", help="Number of nodes (DDP)."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
        time_limit: str = typer.Option(None, "--time-limit", help=TIME_LIMIT_HELP + " --resume continues."),
        resume_from: Path = typer.Option(None, "--resume-from", help=RESUME_FROM_HELP),
        max_cache_gb: float = typer.Option(None, "--max-cache-gb", help=MAX_CACHE_HELP + " Needs --manifest."),
        extract_workers: int = typer.Option(1, "--extract-workers", help="With --max-cache-gb: extraction processes."),
        extract_device: str = typer.Option("cpu", "--extract-device", help="With --max-cache-gb: face detector device."),
    ) -> None:
        """Train one specialist on one stage; writes OUT/best.safetensors + best.json."""
        limit, budget = _session_options(time_limit, max_cache_gb, extract_workers, extract_device)
        from dfpanel.train.config import load_stage_config

        overrides = _overrides(sets, list(ctx.args), devices, num_nodes)
        if data is not None:
            overrides.append(data_override(data))
        if manifest is not None:
            overrides.append(f"data.manifest={manifest}")
        cfg = load_stage_config(config, overrides)
        if budget is None or cfg.data.cache:
            _check_paths(cfg)
        run_dir = out or Path("runs") / (cfg.name or Path(cfg.source).stem)
        if resume_from is not None:
            from dfpanel.train.previous import check_previous_run, take_over

            if not resume_from.is_dir():
                raise DataError(f"--resume-from {resume_from}: no such folder; give the earlier session's --out")
            check_previous_run(resume_from, cfg.name)
            take_over(resume_from, run_dir)
            resume = True
        _quiet_lightning()
        from dfpanel.train.limits import TimeLimitReached
        from dfpanel.train.stage import train_stage

        try:
            result = train_stage(cfg, run_dir, resume=resume, progress=not quiet, time_limit=limit, budget=budget)
        except TimeLimitReached as exc:
            again = "again" if resume else "with --resume"
            _stopped(exc, f"run the same command {again} to continue (in a new session: "
                          f"--resume-from <a copy of {run_dir}>)")
        _print_result(result, f"{cfg.specialist} / {cfg.stage}")

    @app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def curriculum(
        ctx: typer.Context,
        specialist: str = typer.Option(..., "--specialist", "-s", help="bg, av, cm, rr or tm."),
        data: str = typer.Option(None, "--data", help="Face-track cache holding every stage's dataset, or a shard set "
                                 "(folder or URL holding shards.json) to stream it from (the DFDC stage needs none "
                                 "with --max-cache-gb)."),
        out: Path = typer.Option(..., "--out", help="Runs folder: OUT/<specialist>/<stage>/."),
        stages: str = typer.Option(",".join(STAGES), "--stages", help="Stages in order, comma-separated."),
        preset: str = typer.Option("full", "--preset", help="full (GPU presets) or tiny (CPU in minutes)."),
        manifests: Path = typer.Option(None, "--manifests", help="Folder with <stage>.jsonl manifests."),
        manifest_ffpp: Path = typer.Option(None, "--manifest-ffpp"),
        manifest_celebdf: Path = typer.Option(None, "--manifest-celebdf"),
        manifest_dfdc: Path = typer.Option(None, "--manifest-dfdc"),
        init_from: str = typer.Option(None, "--init-from", help="Weights for the first stage (path or URL)."),
        init_sha256: str = typer.Option(None, "--init-sha256", help="Required sha256 of --init-from."),
        sets: list[str] = typer.Option(None, "--set", help="Override a key in every stage (repeatable)."),
        devices: str = typer.Option(None, "--devices"),
        num_nodes: int = typer.Option(None, "--num-nodes"),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
        time_limit: str = typer.Option(None, "--time-limit", help=TIME_LIMIT_HELP + " For all stages together; running the command again continues."),
        resume_from: Path = typer.Option(None, "--resume-from", help=RESUME_FROM_HELP + " Give the earlier --out."),
        max_cache_gb: float = typer.Option(None, "--max-cache-gb", help=MAX_CACHE_HELP),
        extract_workers: int = typer.Option(1, "--extract-workers", help="With --max-cache-gb: extraction processes."),
        extract_device: str = typer.Option("cpu", "--extract-device", help="With --max-cache-gb: face detector device."),
    ) -> None:
        """Train the stages in order, each from the previous stage's best weights (re-run to resume)."""
        limit, budget = _session_options(time_limit, max_cache_gb, extract_workers, extract_device)
        stage_list = [s.strip() for s in stages.split(",") if s.strip()]
        unknown = [s for s in stage_list if s not in STAGES]
        if unknown or not stage_list:
            raise ConfigError(f"--stages {stages!r}: choose from {', '.join(STAGES)}")
        given = {"ffpp": manifest_ffpp, "celebdf": manifest_celebdf, "dfdc": manifest_dfdc}
        found: dict[str, str] = {}
        for stage in stage_list:
            path = given[stage]
            if path is None and manifests is not None:
                path = manifests / f"{stage}.jsonl"
                if not path.is_file():
                    raise DataError(f"{path}: no manifest for stage {stage} in --manifests; name it {stage}.jsonl")
            if path is not None:
                found[stage] = str(path)
        _quiet_lightning()
        from dfpanel.train.curriculum import run_curriculum
        from dfpanel.train.limits import TimeLimitReached

        try:
            results = run_curriculum(
                specialist.lower(),
                cache=None if data is None else str(data),
                out=out,
                stages=stage_list,
                preset=preset,
                manifests=found,
                overrides=_overrides(sets, list(ctx.args), devices, num_nodes),
                init_from=init_from,
                init_sha256=init_sha256,
                progress=not quiet,
                time_limit=limit,
                resume_from=resume_from,
                budget=budget,
            )
        except TimeLimitReached as exc:
            _stopped(exc, f"run the same command again to continue (in a new session: --resume-from <a copy of {out}>)")
        _print_result(results, f"{specialist} curriculum")


def data_override(data: str) -> str:
    """`--data X` as a config override: data.shards for a shard set (a URL, or a folder holding
    shards.json), else data.cache."""
    from dfpanel.extract.shards import is_shard_set

    return f"data.{'shards' if is_shard_set(data) else 'cache'}={data}"


def _check_paths(cfg) -> None:
    if cfg.data.shards:
        from dfpanel.extract.shards import ShardSet

        for location in filter(None, (cfg.data.shards, cfg.data.val_shards)):
            ShardSet(location)  # one-line DataError when it is not a shard set
        return
    if not cfg.data.cache:
        raise ConfigError(f"{cfg.source}: no face-track cache given; pass --data CACHE")
    from dfpanel.extract.cache import FaceTrackCache

    FaceTrackCache(cfg.data.cache)  # one-line DataError when it is not a cache

"""`dfpanel detect PATH...`: analyse videos with the panel, write report.json + report.html each."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

import typer

from dfpanel.errors import ConfigError, DataError, DfpanelError


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


class Backend(str, Enum):
    torch = "torch"
    onnx = "onnx"


VERDICT_STYLE = {"fake": "bold red", "real": "bold green", "uncertain": "bold yellow"}


def outcome_line(outcome) -> str:
    """One terminal line: verdict, probability, strongest specialist (rich markup)."""
    from rich.markup import escape

    r = outcome.report
    name = escape(outcome.path.name)
    if not outcome.ok:
        return f"[red]✗[/] {name}  [red]not analysed[/]: {escape(outcome.reason or '')}"
    p = r["panel"]["probability"]
    verdict = r["verdict"]
    prob = "  —" if p is None else f"{100 * p:3.0f}%"
    strong = next((s for s in r["specialists"] if s["name"] == r.get("strongest")), None)
    strong_txt = f"strongest {strong['name'].upper()} ({strong['title']}, {100 * strong['probability']:.0f}%)" if strong else "no specialist scored"
    abst = [s["name"].upper() for s in r["specialists"] if s["status"] == "abstained"]
    abst_txt = f"  [dim]abstained: {', '.join(abst)}[/]" if abst else ""
    style = VERDICT_STYLE.get(verdict, "bold")
    from dfpanel.report.training import short_notice

    td = r.get("training_data") or {}
    said = short_notice(td)
    demo_txt = f"  [bold yellow]{escape(said)}[/]" if td.get("demonstration") else (f"  [dim]{escape(said)}[/]" if said else "")
    return f"[green]✓[/] {name}  [{style}]{verdict.upper():9}[/] {prob}  {escape(strong_txt)}{abst_txt}{demo_txt}"


def register(app: typer.Typer) -> None:
    @app.command("detect")
    def detect(
        paths: list[Path] = typer.Argument(..., help="Video files and/or folders (searched recursively; videos found by probing)."),
        weights: Path = typer.Option(None, "--weights", "-w", help="Folder with one .safetensors + .json per specialist (and panel.json). Default: $DFPANEL_WEIGHTS."),
        out: Path = typer.Option(Path("dfpanel-reports"), "--out", "-o", help="Where report folders (and a folder run's summary) go."),
        frames: int = typer.Option(None, "--frames", help="Frames sampled per video. Default: what panel.json was fitted on, else what the weights' training caches used (their input spec); every other extraction setting always comes from the weights."),
        device: Device = typer.Option(Device.cpu, "--device", help="cpu or cuda."),
        backend: Backend = typer.Option(Backend.torch, "--backend", help="torch, or onnx (files from `dfpanel export`)."),
        as_json: bool = typer.Option(False, "--json", help="Print the report(s) as JSON on stdout instead of one line per video."),
        margin: float = typer.Option(None, "--margin", help="Override panel.json's uncertainty margin around the threshold."),
        only: str = typer.Option(None, "--only", help="Comma-separated specialists to run (default: all in --weights)."),
        batch_size: int = typer.Option(32, "--batch-size", help="Samples per forward pass."),
    ) -> None:
        """Detect deepfakes in videos: specialist scores, panel verdict, report.json + report.html.

        Writes OUT/<video>/report.json and report.html (and OUT/summary.csv + summary.html for a folder).
        Exit code 0 when every video was analysed, 1 when some could not be (each named with its reason).
        """
        from rich.console import Console
        from rich.markup import escape

        from dfpanel.console import err_console
        from dfpanel.detect.build import build_detector, resolve_weights
        from dfpanel.detect.run import check_out_dir, run_detect

        for p in paths:  # before loading any weights: a typo should fail fast
            if not p.exists():
                raise DataError(f"{p}: no such file or folder; check the path")
        if margin is not None and not 0.0 <= margin < 0.5:
            raise ConfigError(f"--margin must be in [0, 0.5), got {margin}")
        check_out_dir(out)  # an --out that cannot hold reports fails now, not after the analysis
        detector = build_detector(
            resolve_weights(weights), frames=frames, device=device.value, backend=backend.value, margin=margin,
            only=[s.strip() for s in only.split(",") if s.strip()] if only else None, batch_size=batch_size,
        )
        out_console = err_console if as_json else Console(highlight=False)
        run = run_detect(paths, detector, out, progress=True,
                         on_outcome=lambda o, d: out_console.print(outcome_line(o), highlight=False, soft_wrap=True))
        if not run.outcomes:
            raise DfpanelError(f"no videos found in {', '.join(str(p) for p in paths)}; give video files or folders holding them")
        if as_json:
            reports = [o.report for o in run.outcomes]
            typer.echo(json.dumps(reports[0] if len(reports) == 1 else reports, indent=1))
        td = detector.training_data()
        for line in (td["notice"], td["note"]):
            if line:
                err_console.print(f"[yellow]note:[/] {escape(line)}", highlight=False, soft_wrap=True)
        for line in run.warnings:
            err_console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)
        n_bad = len(run.failed)
        tail = f"; summary: {run.summary[1]}" if run.summary else ""
        # soft_wrap: paths stay whole (copyable, greppable) instead of being cut at the terminal width
        err_console.print(
            f"{len(run.outcomes) - n_bad}/{len(run.outcomes)} video(s) analysed; reports in {out}{tail}",
            highlight=False, soft_wrap=True,
        )
        for o in run.failed:
            err_console.print(f"[red]not analysed[/]: {escape(str(o.path))}: {escape(o.reason or '')}",
                              highlight=False, soft_wrap=True)
        if run.summary_error:
            err_console.print(f"[red]error:[/] {escape(run.summary_error)}", highlight=False, soft_wrap=True)
        if run.exit_code:
            raise typer.Exit(1)

"""`dfpanel demo`: the README's main command."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        out: Path = typer.Option(Path("dfpanel-demo"), "--out", "-o", help="Folder for everything the demo makes (re-runs reuse it)."),
        specialists: str = typer.Option("bg,av,cm,rr,tm", help="Specialists to train, comma-separated."),
        workers: int = typer.Option(2, "--workers", "-j", help="Extraction worker processes."),
        fresh: bool = typer.Option(False, help="Delete OUT first and start over."),
    ) -> None:
        """Run the whole pipeline on a small synthetic set on CPU: synth -> index -> extract -> train all
        five specialists (tiny presets) -> eval -> panel fit -> detect, and print where the HTML reports are."""
        import shutil

        from dfpanel.demo import SPECIALISTS, DemoPlan, run_demo
        from dfpanel.errors import ConfigError

        chosen = tuple(s.strip().lower() for s in specialists.split(",") if s.strip())
        unknown = [s for s in chosen if s not in SPECIALISTS]
        if unknown or not chosen:
            raise ConfigError(f"--specialists: unknown {', '.join(unknown) or '(none given)'}; choose from {','.join(SPECIALISTS)}")
        if fresh and out.exists():
            shutil.rmtree(out)
        run_demo(DemoPlan(out=out, specialists=chosen, workers=workers))

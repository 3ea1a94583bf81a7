"""`dfpanel eval`: score test manifests with trained specialists and print the cross-dataset table."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_command(
        weights: list[Path] = typer.Option(
            ..., "--weights", "-w", help="Specialist weights (.safetensors with its .json sidecar); repeat for several."
        ),
        manifest: list[Path] = typer.Option(
            ..., "--manifest", "-m", help="Test manifest (from `dfpanel index`); repeat for a cross-dataset table."
        ),
        data: Path = typer.Option(..., "--data", "-d", help="Face-track cache written by `dfpanel extract`."),
        split: str = typer.Option("test", "--split", help="Split of each manifest to evaluate ('all' for every row)."),
        out: Path = typer.Option(Path("eval"), "--out", "-o", help="Folder for metrics.json, scores.csv, roc.png."),
        threshold: float = typer.Option(0.5, "--threshold", help="Probability above which a video is called fake."),
        aggregate: str = typer.Option("mean", "--aggregate", help="Video score from its samples: mean, median, max, logit_mean."),
        batch_size: int = typer.Option(16, "--batch-size", min=1, help="Samples per forward pass."),
        device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu, cuda, cuda:1."),
    ) -> None:
        """Evaluate specialists on test sets: AUC, EER, AP, log-loss, accuracy, F1, bias (frame and video level)."""
        from rich.console import Console

        from dfpanel.errors import DataError
        from dfpanel.evaluate.metrics import check_threshold
        from dfpanel.evaluate.run import evaluate_weights, write_outputs
        from dfpanel.evaluate.tables import rich_table
        from dfpanel.inference.aggregate import HOW

        check_threshold(threshold)
        if aggregate not in HOW:
            from dfpanel.errors import ConfigError

            raise ConfigError(f"--aggregate {aggregate!r} is unknown; choose one of {', '.join(HOW)}")
        if not data.is_dir():
            raise DataError(f"{data}: cache folder not found; create it with `dfpanel extract MANIFEST --out {data}`")

        console = Console()
        results, scores = evaluate_weights(
            weights,
            manifest,
            data,
            split=None if split == "all" else split,
            threshold=threshold,
            how=aggregate,
            batch_size=batch_size,
            device=device,
            progress=console.is_terminal,
        )
        paths = write_outputs(results, scores, out)
        console.print(rich_table(results))
        # FF++-style per-manipulation rows, when a test set holds several kinds of fake.
        if any(len(ts["video"]["by_fake_type"]) > 1 for run in results["runs"] for ts in run["test_sets"]):
            console.print(rich_table(results, breakdown="by_fake_type"))
        for run in results["runs"]:
            for ts in run["test_sets"]:
                where = f"{run['weights']['label']} / {ts['name']}"
                if ts["missing_videos"]:
                    shown = ", ".join(ts["missing_videos"][:3])
                    console.print(
                        f"[yellow]note[/] {where}: {len(ts['missing_videos'])} of {ts['n_manifest']} videos are not "
                        f"in the cache and were not scored (e.g. {shown}); see the cache's extract_report.json"
                    )
                for note in ts["video"]["overall"]["notes"]:
                    console.print(f"[yellow]note[/] {where}: {note}")
        console.print(f"wrote {paths['metrics']}, {paths['scores']}, {paths['roc']}")

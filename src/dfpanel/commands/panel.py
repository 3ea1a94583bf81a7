"""`dfpanel panel fit` (combiner weights + threshold on validation videos) and `dfpanel panel show`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from dfpanel.errors import ConfigError

panel_app = typer.Typer(help="The panel that combines the specialists' verdicts.", no_args_is_help=True)


class ThresholdMethod(str, Enum):
    eer = "eer"
    fpr = "fpr"


class Aggregate(str, Enum):  # dfpanel.inference.aggregate.HOW
    mean = "mean"
    median = "median"
    max = "max"
    logit_mean = "logit_mean"


def _table(panel, auc: dict | None = None) -> "object":
    from rich.table import Table

    t = Table(title=f"panel ({'fitted' if panel.fitted else 'equal weights, not fitted'})")
    t.add_column("specialist")
    t.add_column("weight", justify="right")
    if auc:
        t.add_column("its own AUC", justify="right")
    abstained = panel.metrics.get("abstained", {})
    for name in panel.specialists:
        row = [name.upper(), f"{panel.weights.get(name, 0.0):+.3f}"]
        if auc:
            a = auc.get(name)
            row.append("—" if a is None else f"{a:.3f}" + (f" ({abstained[name]} abstained)" if abstained.get(name) else ""))
        t.add_row(*row)
    return t


def _sampling(panel) -> str:
    frames = "detect's default frames" if panel.frames_per_video is None else f"{panel.frames_per_video} frames"
    return f"videos scored on {frames} per video, samples aggregated by {panel.aggregate}"


def register(app: typer.Typer) -> None:
    @panel_app.command("fit")
    def fit(
        weights: Path = typer.Option(..., "--weights", "-w", help="Folder with one .safetensors + .json per specialist; panel.json is written here."),
        manifest: list[Path] = typer.Option(..., "--manifest", "-m", help="Validation manifest (its videos must be in the cache); repeat to combine several."),
        data: Path = typer.Option(None, "--data", help="Face-track cache; default: the one named in the weights' sidecars."),
        split: str = typer.Option(None, "--split", help="Only this split of the manifest (default: every video in it)."),
        threshold: ThresholdMethod = typer.Option(ThresholdMethod.eer, "--threshold", help="eer, or fpr (with --target-fpr)."),
        target_fpr: float = typer.Option(None, "--target-fpr", help="For --threshold fpr: highest share of real videos called fake, e.g. 0.05."),
        margin: float = typer.Option(0.1, "--margin", help="'uncertain' when the probability is within this of the threshold."),
        device: str = typer.Option("cpu", "--device"),
        batch_size: int = typer.Option(16, "--batch-size"),
        aggregate: Aggregate = typer.Option(Aggregate.mean, "--aggregate", help="A specialist's video score from its samples: mean (of probabilities), median, max or logit_mean; detection uses the same."),
    ) -> None:
        """Fit the panel's weights and threshold on validation videos; writes WEIGHTS/panel.json.

        Logistic regression over the specialists' video-level logits, abstentions (AV without audio)
        masked; threshold at the equal error rate or a target false-positive rate.
        """
        from rich.console import Console

        from dfpanel.panel.fit import fit_from_folder

        if not 0.0 <= margin < 0.5:
            raise ConfigError(f"--margin must be in [0, 0.5), got {margin}")
        if threshold == ThresholdMethod.fpr and target_fpr is None:
            raise ConfigError("--threshold fpr needs --target-fpr (e.g. 0.05)")
        panel, table = fit_from_folder(weights, manifest, data, split=split, threshold=threshold.value,
                                       target_fpr=target_fpr, margin=margin, device=device, batch_size=batch_size,
                                       how=aggregate.value)
        path = panel.save(weights)
        con = Console(highlight=False)
        con.print(_table(panel, panel.metrics.get("specialist_auc")))
        m = panel.metrics
        con.print(f"{m['n_videos']} validation videos ({m['n_fake']} fake): AUC {m['auc']:.3f} "
                  f"(equal weights {m['equal_weights_auc']:.3f}), log-loss {m['log_loss']:.3f} "
                  f"(equal weights {m['equal_weights_log_loss']:.3f})")
        for note in m.get("notes", []):
            con.print(f"[yellow]note:[/] {note}")
        con.print(f"threshold {panel.threshold:.3f} ({panel.threshold_method}), uncertain within ±{panel.margin}; "
                  f"{_sampling(panel)}; wrote {path}")

    @panel_app.command("show")
    def show(weights: Path = typer.Option(..., "--weights", "-w", help="Folder holding panel.json.")) -> None:
        """Print the panel stored with the weights (or the equal-weights default)."""
        from rich.console import Console

        from dfpanel.panel.combiner import Panel

        panel = Panel.load_or_default(weights)
        con = Console(highlight=False)
        con.print(_table(panel))
        con.print(f"threshold {panel.threshold:.3f} ({panel.threshold_method}), margin {panel.margin}; {_sampling(panel)}")

    app.add_typer(panel_app, name="panel")

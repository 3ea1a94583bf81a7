"""`dfpanel weights fetch`: published weights by URL -> a local weights folder for detect/eval/train."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Get published specialist weights (safetensors + JSON sidecar) by URL.", no_args_is_help=True)
    app.add_typer(group, name="weights")

    @group.command("fetch")
    def fetch(
        url: str = typer.Argument(..., help="URL of a specialist's .safetensors file (its .json sidecar sits beside it)."),
        sha256: str = typer.Option(..., "--sha256", help="Published sha256 of the .safetensors file; a mismatch is refused."),
        out: Path = typer.Option(Path("weights"), "--out", "-o", help="Weights folder to put it in (as `detect --weights` reads)."),
        sidecar_url: str = typer.Option(None, help="URL of the JSON sidecar (default: the weights URL with .json)."),
    ) -> None:
        """Download once (cached in ~/.cache/dfpanel or $DFPANEL_CACHE), check the sha256, and install the
        weights and their sidecar into OUT/<specialist>.safetensors + .json."""
        from dfpanel.weights.install import fetch_weights
        from dfpanel.weights.sidecar import read_sidecar, training_summary

        path = fetch_weights(url, sha256=sha256, out=out, sidecar_url=sidecar_url)
        typer.echo(f"installed {path} (sha256 {sha256.lower()[:12]}...)")
        learned = training_summary(read_sidecar(path))
        what = {"synthetic": "learned from synthetic data only (a demonstration, not a detector)",
                "real": "learned from real datasets",
                "unknown": "training data unknown (its sidecar records no complete provenance)"}[learned["training_data"]]
        names = f": {', '.join(learned['datasets'])}" if learned["datasets"] else ""
        typer.echo(f"{what}{names}")

"""`dfpanel serve`: a local web page to drop a video on and read its report."""

from __future__ import annotations

from pathlib import Path

import typer

from dfpanel.commands.detect import Backend, Device


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        weights: Path = typer.Option(None, "--weights", "-w", help="Folder with the specialists' weights (and panel.json). Default: $DFPANEL_WEIGHTS."),
        port: int = typer.Option(8000, "--port", help="TCP port."),
        host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (127.0.0.1: this machine only)."),
        frames: int = typer.Option(None, "--frames", help="Frames sampled per video. Default: what panel.json was fitted on, else what the weights' training caches used."),
        device: Device = typer.Option(Device.cpu, "--device"),
        backend: Backend = typer.Option(Backend.torch, "--backend"),
        work: Path = typer.Option(Path("dfpanel-serve"), "--work", help="Where uploads and their reports are kept."),
        max_upload_mb: int = typer.Option(1024, "--max-upload-mb", help="Largest accepted upload."),
    ) -> None:
        """Serve a page on http://HOST:PORT/ where a dropped video is analysed and its report shown."""
        import uvicorn
        from rich.markup import escape

        from dfpanel.console import err_console
        from dfpanel.detect.build import build_detector, resolve_weights
        from dfpanel.serve.app import create_app

        detector = build_detector(resolve_weights(weights), frames=frames, device=device.value, backend=backend.value)
        app_ = create_app(detector, work, max_upload_mb=max_upload_mb)
        err_console.print(f"dfpanel serving on [bold]http://{host}:{port}/[/] (Ctrl+C to stop); reports in {work}")
        td = detector.training_data()
        for line in (td["notice"], td["note"]):
            if line:
                err_console.print(f"[yellow]note:[/] {escape(line)}", highlight=False, soft_wrap=True)
        uvicorn.run(app_, host=host, port=port, log_level="warning")

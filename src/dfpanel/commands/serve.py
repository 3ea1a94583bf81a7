"""`dfpanel serve`: a web service a team can share: drop a video on a page (or POST it to the API), a
background worker analyses it, the page shows its progress and then its report."""

from __future__ import annotations

import socket
from pathlib import Path

import typer

from dfpanel.commands.detect import Backend, Device
from dfpanel.errors import ConfigError

MIN_TOKEN = 12


def _retention(text: str) -> float | None:
    if text.strip().lower() in ("0", "never", "off", "none"):
        return None
    from dfpanel.train.limits import parse_duration

    return parse_duration(text, "--retention")


def allowed_hosts(host: str, extra: list[str]) -> list[str]:
    """Host header values the service answers to: loopback names, the --host itself and --allowed-hosts;
    on a wildcard --host (every interface) also this machine's names and addresses."""
    from dfpanel.serve.security import LOOPBACK_NAMES, is_wildcard

    names = list(LOOPBACK_NAMES)
    if is_wildcard(host):
        names += [socket.gethostname(), socket.getfqdn()]
        try:
            names += [a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None)]
        except OSError:
            pass
    else:
        names.append(host)
    for item in extra:
        names += [h.strip() for h in item.split(",") if h.strip()]
    return list(dict.fromkeys(names))


def check_access(host: str, token: str | None, insecure: bool) -> None:
    """Refuse to listen beyond this machine without a token (one line saying what to do)."""
    from dfpanel.serve.security import TOKEN_ENV, is_loopback

    if token is not None and len(token) < MIN_TOKEN:
        raise ConfigError(f"--token is too short ({len(token)} characters); use at least {MIN_TOKEN}, e.g. "
                          "python -c 'import secrets; print(secrets.token_urlsafe())'")
    if not is_loopback(host) and not token and not insecure:
        raise ConfigError(f"--host {host} lets other machines in: give a token (--token or ${TOKEN_ENV}), or "
                          "pass --insecure-no-token on a network where everyone may use and see this service")


def tls_options(cert: Path | None, key: Path | None) -> dict:
    """uvicorn's TLS options from --tls-cert/--tls-key (both or neither; readable PEM files)."""
    if cert is None and key is None:
        return {}
    if cert is None or key is None:
        raise ConfigError("--tls-cert and --tls-key go together: the certificate (PEM) and its private key (PEM)")
    import ssl

    for opt, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not Path(path).is_file():
            raise ConfigError(f"{opt} {path}: no such file")
    try:  # load them now: a wrong file is one line here, not a traceback from uvicorn
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"--tls-cert {cert} / --tls-key {key}: not a certificate and its key ({exc})") from None
    return {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        weights: Path = typer.Option(None, "--weights", "-w", help="Folder with the specialists' weights (and panel.json). Default: $DFPANEL_WEIGHTS."),
        port: int = typer.Option(8000, "--port", help="TCP port."),
        host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on. 127.0.0.1: this machine only; another needs --token."),
        token: str = typer.Option(None, "--token", envvar="DFPANEL_SERVE_TOKEN", show_envvar=True,
                                  help="Required on every request when set: 'Authorization: Bearer TOKEN' for the API, a login page for browsers."),
        insecure_no_token: bool = typer.Option(False, "--insecure-no-token", help="Allow a non-loopback --host without a token."),
        tls_cert: Path = typer.Option(None, "--tls-cert", help="Serve HTTPS with this certificate (PEM; with --tls-key)."),
        tls_key: Path = typer.Option(None, "--tls-key", help="The certificate's private key (PEM)."),
        hosts: list[str] = typer.Option([], "--allowed-hosts", help="Host names clients use to reach the service (comma-separated or repeated); others are refused (DNS rebinding)."),
        data_dir: Path = typer.Option(Path("dfpanel-serve"), "--data-dir", help="Where jobs, uploads and reports are kept (a restart resumes from it)."),
        workers: int = typer.Option(1, "--workers", min=1, help="Videos analysed at once."),
        queue: int = typer.Option(32, "--queue", min=1, help="Videos waiting at most; more are answered 503 with Retry-After."),
        max_per_client: int = typer.Option(None, "--max-per-client", min=0, help="Videos one browser (or, for API clients, one address) may have waiting or running at once; more are answered 429. Default: half the queue; 0: no cap."),
        max_upload_mb: int = typer.Option(500, "--max-upload-mb", min=1, help="Largest accepted upload."),
        keep_uploads: bool = typer.Option(False, "--keep-uploads", help="Keep uploaded videos after analysis (default: deleted)."),
        retention: str = typer.Option("7d", "--retention", help="Delete reports this long after they finish (e.g. 7d, 12h; 'never' keeps them)."),
        min_free_mb: int = typer.Option(1024, "--min-free-mb", min=0, help="Refuse uploads that would leave less disk space than this."),
        frames: int = typer.Option(None, "--frames", help="Frames sampled per video. Default: what panel.json was fitted on, else what the weights' training caches used."),
        device: Device = typer.Option(Device.cpu, "--device"),
        backend: Backend = typer.Option(Backend.torch, "--backend"),
    ) -> None:
        """Serve a page on http://HOST:PORT/ where dropped videos are analysed in the background (API: /docs)."""
        import uvicorn
        from rich.markup import escape

        from dfpanel.console import err_console
        from dfpanel.detect.build import check_device, check_frames, resolve_weights
        from dfpanel.errors import WeightsError
        from dfpanel.serve.analysers import DetectorFactory
        from dfpanel.serve.app import ServeConfig, create_app
        from dfpanel.serve.security import is_loopback

        # what can be checked without loading a model, before anything starts
        check_access(host, token, insecure_no_token)
        retention_s = _retention(retention)
        tls = tls_options(tls_cert, tls_key)
        allowed = allowed_hosts(host, hosts)
        folder = resolve_weights(weights)
        if not folder.is_dir():  # the rest is checked as the analysis processes load the weights
            raise WeightsError.folder_not_found(folder)
        if frames is not None:
            check_frames(frames)
        check_device(device.value)
        cfg = ServeConfig(data_dir=data_dir, max_upload_mb=max_upload_mb, workers=workers, max_queue=queue,
                          keep_uploads=keep_uploads, retention_s=retention_s, retention_text=retention, token=token,
                          allowed_hosts=allowed, min_free_mb=min_free_mb,
                          max_per_client=max(1, queue // 2) if max_per_client is None else max_per_client)
        factory = DetectorFactory(str(folder.resolve()), frames=frames, device=device.value, backend=backend.value)
        app_ = create_app(factory, cfg)
        err_console.print(f"loading the specialists in {workers} analysis process(es) ...", highlight=False)
        app_.state.runner.start()  # a one-line error if the weights cannot be loaded, before listening
        shown = "localhost" if host in ("127.0.0.1", "::1") else host
        scheme = "https" if tls else "http"
        err_console.print(f"dfpanel serving on [bold]{scheme}://{shown}:{port}/[/] (Ctrl+C to stop; API docs at /docs); "
                          f"jobs in {data_dir}; {workers} worker(s)", highlight=False)
        if token:
            err_console.print("a token is required (browsers log in once)", highlight=False)
        elif is_loopback(host):
            err_console.print("no token: only this machine can connect", highlight=False)
        else:
            err_console.print("[yellow]warning:[/] no token, and other machines can connect: anyone who reaches "
                              "this port can upload videos", highlight=False)
        td = app_.state.runner.info.get("training_data") or {}
        for line in (td.get("notice"), td.get("note")):
            if line:
                err_console.print(f"[yellow]note:[/] {escape(line)}", highlight=False, soft_wrap=True)
        try:
            uvicorn.run(app_, host=host, port=port, log_level="warning", timeout_graceful_shutdown=30, **tls)
        finally:
            app_.state.runner.stop()

"""The `dfpanel` command line: one sub-command per step of the pipeline.

Each step's commands live in `dfpanel.commands.<step>` and register themselves on the app through a
`register(app)` function, so this file stays small and every step owns its own options. Heavy imports
(torch, av, timm) happen inside the command bodies, keeping `dfpanel --help` fast.
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer

from dfpanel import __version__
from dfpanel.console import err_console
from dfpanel.errors import DfpanelError

# Order here is the order of `dfpanel --help`, which is the order of the pipeline.
COMMAND_MODULES = (
    "demo",
    "synth",
    "index",
    "extract",
    "cache",
    "pseudofakes",
    "train",
    "evaluate",
    "detect",
    "panel",
    "export",
    "serve",
    "weights",
)

app = typer.Typer(
    name="dfpanel",
    help="Deepfake video detection by a panel of five specialists (BG, AV, CM, RR, TM).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"dfpanel {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[logging.StreamHandler(sys.stderr)],
    )
    # Libraries log a lot at INFO; keep the terminal for our own progress.
    for noisy in ("lightning", "lightning.pytorch", "pytorch_lightning", "PIL", "matplotlib", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _register_commands() -> None:
    # Every listed step must import: a broken module is a bug to see, never a command that quietly
    # disappears from `dfpanel --help`.
    for name in COMMAND_MODULES:
        importlib.import_module(f"dfpanel.commands.{name}").register(app)


_register_commands()


def error_line(exc: DfpanelError) -> str:
    """The one line a DfpanelError says. Raised in a DataLoader worker, PyTorch re-raises it in the main
    process with the worker's traceback as its message: the last line of that is ours."""
    text = str(exc)
    if text.startswith("Caught ") and "Original Traceback" in text:
        last = text.rstrip().splitlines()[-1]
        name = f"{type(exc).__module__}.{type(exc).__qualname__}: "
        if last.startswith(name):
            return last[len(name):]
    return text


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point. Click handles usage errors (exit 2) and --help; a DfpanelError
    (a user mistake: bad path, wrong dataset folder, foreign weights) becomes one red line."""
    try:
        app(args=argv, prog_name="dfpanel")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except DfpanelError as exc:
        err_console.print(f"[bold red]error:[/] {error_line(exc)}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/] (re-run the same command to resume)")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

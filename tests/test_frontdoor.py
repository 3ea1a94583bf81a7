"""The command line as a user first meets it: --version, --help listing every pipeline step, a broken
step module stopping the CLI rather than vanishing from it, and every `dfpanel ...` line the README
shows naming a real command with options it accepts."""

from __future__ import annotations

import importlib
import re
import shlex
import sys
from pathlib import Path

import pytest
import typer

from dfpanel import __version__, cli
from dfpanel.cli import COMMAND_MODULES, app, main

README = Path(__file__).resolve().parents[1] / "README.md"


def test_version_prints_the_package_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"dfpanel {__version__}\n"


def _commands_by_module() -> dict[str, set[str]]:
    """Top-level command names on the app, by the module whose code runs them."""
    out: dict[str, set[str]] = {}
    for c in app.registered_commands:
        out.setdefault(c.callback.__module__, set()).add(c.name or c.callback.__name__.replace("_", "-"))
    for g in app.registered_groups:
        for c in g.typer_instance.registered_commands:
            out.setdefault(c.callback.__module__, set()).add(g.name)
    return out


def test_help_lists_the_commands_of_every_command_module(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # one table row per command
    assert main(["--help"]) == 0
    rows = [line.strip("│ ") for line in capsys.readouterr().out.splitlines() if line.startswith("│ ")]
    listed = {row.split()[0] for row in rows if row}
    by_module = _commands_by_module()
    for step in COMMAND_MODULES:
        names = by_module.get(f"dfpanel.commands.{step}")
        assert names, f"dfpanel.commands.{step} is listed in COMMAND_MODULES but no command of the app comes from it"
        assert names <= listed, (step, names - listed)
    assert set(by_module) == {f"dfpanel.commands.{step}" for step in COMMAND_MODULES}  # nothing registered from elsewhere


@pytest.mark.parametrize(
    "source, error, message",
    [
        ("import dfpanel_no_such_dependency\n", ModuleNotFoundError, "dfpanel_no_such_dependency"),
        ("raise RuntimeError('step module broken at import')\n", RuntimeError, "broken at import"),
        ("VALUE = 1  # no register()\n", AttributeError, "register"),
        (None, ModuleNotFoundError, "dfpanel.commands.broken_step"),  # listed, but no such module
    ],
    ids=["missing-dependency", "error-at-import", "no-register", "no-such-module"],
)
def test_a_command_module_that_fails_stops_the_cli_instead_of_dropping_its_command(
    tmp_path, monkeypatch, source, error, message
):
    import dfpanel.commands

    if source is not None:
        (tmp_path / "broken_step.py").write_text(source)
    monkeypatch.setattr(dfpanel.commands, "__path__", [*dfpanel.commands.__path__, str(tmp_path)])
    importlib.invalidate_caches()
    # Registration on an app of its own, so the real one keeps its commands; the steps around the
    # broken one only add commands to the app they are given.
    monkeypatch.setattr(cli, "app", typer.Typer())
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("synth", "broken_step", "index"))
    try:
        with pytest.raises(error, match=re.escape(message)):
            cli._register_commands()
    finally:
        sys.modules.pop("dfpanel.commands.broken_step", None)
        vars(dfpanel.commands).pop("broken_step", None)


def test_unknown_command_is_a_usage_error():
    assert main(["no-such-step"]) == 2


def _readme_command_lines() -> list[str]:
    """Every `dfpanel ...` line of the README's shell blocks, comments cut, <placeholders> as one word."""
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", README.read_text(), re.DOTALL)
    lines = (ln.split("#", 1)[0].strip() for block in blocks for ln in block.splitlines())
    return [re.sub(r"<[^>]*>", "PLACEHOLDER", ln) for ln in lines if ln.startswith("dfpanel ")]


README_LINES = _readme_command_lines()


def test_the_readme_shows_dfpanel_commands():
    assert len(README_LINES) >= 5  # else the check below has nothing to check


@pytest.mark.parametrize("line", README_LINES, ids=lambda line: " ".join(line.split()[1:3]))
def test_readme_command_names_a_command_and_options_it_accepts(line, capsys):
    argv = shlex.split(line)[1:]
    # typer brings its own copy of click: walk its command objects by what they do, not their class
    cmd = typer.main.get_command(app)
    ctx = cmd.context_class(cmd, info_name="dfpanel")
    rest = list(argv)
    while hasattr(cmd, "list_commands"):  # a group: the next word names a sub-command
        name = rest.pop(0)
        assert name in cmd.list_commands(ctx), f"{line}: no command {name!r}"
        cmd = cmd.get_command(ctx, name)
        ctx = cmd.context_class(cmd, info_name=name, parent=ctx)
    # Every option the line uses is one of the command's (train and curriculum pass unknown options
    # on as config overrides, so click alone would not refuse a misspelt one there).
    known = {opt for param in cmd.params for opt in (*param.opts, *param.secondary_opts)}
    used = {word.split("=", 1)[0] for word in rest if word.startswith("-")}
    assert used <= known, f"{line}: unknown options {sorted(used - known)}"
    # and the entry point takes the line (asking for its help, so nothing runs)
    assert main([*argv, "--help"]) == 0, capsys.readouterr().err

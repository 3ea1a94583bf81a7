"""The terminal streams every step writes to: progress and messages on stderr, results on stdout."""

from __future__ import annotations

from rich.console import Console

err_console = Console(stderr=True)

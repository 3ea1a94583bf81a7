"""Session limits for training on machines lent for a while (Kaggle notebooks, preemptible jobs).

`--time-limit 8h30m`: the command's wall-clock budget. One `TimeLimit` is started when the command
starts and passed down (curriculum -> stage -> chunk); each fit gets what is left as Lightning's own
`Trainer(max_time=...)`. When it runs out the run saves its state, is NOT recorded as finished
(no result.json, the chunk not marked done, the next stage not started) and `TimeLimitReached` says
so; a re-run continues it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from dfpanel.errors import ConfigError, DfpanelError

# EX_TEMPFAIL (sysexits.h): "a temporary failure; the user is invited to retry later".
TIME_LIMIT_EXIT = 75

_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")


def parse_duration(text: str, option: str = "--time-limit") -> float:
    """'8h30m' -> 30600.0, '45m', '90s', '1.5h', '1d2h'. ConfigError (one line) on anything else."""
    raw = str(text).strip().lower().replace(" ", "")
    pos, total = 0, 0.0
    for m in _PART.finditer(raw):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not raw or pos != len(raw) or total <= 0:
        raise ConfigError(f"{option} {text!r}: expected a duration such as 8h30m, 45m or 90s (units d, h, m, s)")
    return total


def format_duration(seconds: float) -> str:
    """30600 -> '8h30m', 90 -> '1m30s', 2.5 -> '2.5s'."""
    if seconds < 60:
        return f"{seconds:g}s"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (s, "s")) if v)


@dataclass(frozen=True)
class TimeLimit:
    """A wall-clock budget that started at `started` (time.monotonic())."""

    seconds: float
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def parse(cls, text: str | None) -> "TimeLimit | None":
        return None if text is None else cls(parse_duration(text))

    @property
    def text(self) -> str:
        return format_duration(self.seconds)

    def remaining(self) -> float:
        return self.seconds - (time.monotonic() - self.started)

    def expired(self) -> bool:
        return self.remaining() <= 0


class TimeLimitReached(DfpanelError):
    """--time-limit ran out: the run's state is saved, it is not finished, and running the same command
    again (`dfpanel train --resume`, `dfpanel curriculum`) continues it. Exit code 75."""

    exit_code = TIME_LIMIT_EXIT

    def __init__(self, message: str, run_dir=None):
        super().__init__(message)
        self.run_dir = run_dir

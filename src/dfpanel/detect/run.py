"""Detection over PATH arguments: discover videos, analyse each, write its report folder, and for a
folder run a summary table. Used by `dfpanel detect` and the web page."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dfpanel.detect.discovery import Unreadable, VideoInfo, discover_videos
from dfpanel.detect.pipeline import PanelDetector, VideoOutcome
from dfpanel.errors import DataError
from dfpanel.report.summary import summary_row, write_summary
from dfpanel.report.write import write_report

log = logging.getLogger(__name__)


@dataclass
class DetectRun:
    outcomes: list[VideoOutcome] = field(default_factory=list)
    report_dirs: list[Path] = field(default_factory=list)
    summary: tuple[Path, Path] | None = None
    skipped: int = 0  # non-video files in folders
    warnings: list[str] = field(default_factory=list)  # paths skipped for a reason worth naming
    summary_error: str | None = None  # why summary.csv/html could not be written

    @property
    def failed(self) -> list[VideoOutcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.summary_error else 0


def check_out_dir(out: str | os.PathLike) -> Path:
    """Make sure reports can be written under `out` before any video is analysed: it is (or can be
    made) a folder, and a file can be created in it. A one-line DataError otherwise."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out}: is a file, not a folder; give a folder for the reports")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".dfpanel-write-check.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise DataError(f"--out {out}: cannot write there ({exc.strerror or exc}); give a folder you can write to") from None
    return out


def write_failure(outcome: VideoOutcome, exc: OSError) -> VideoOutcome:
    """The outcome of a video whose report could not be written: failed, with the reason (the
    analysis, if any, stays in the in-memory report)."""
    message = f"could not write report: {exc.strerror or exc}"
    outcome.report["status"] = "failed"
    outcome.report["error"] = {"kind": "error", "message": message}
    outcome.report["explanation"] = [f"The report could not be written: {exc.strerror or exc}."]
    return outcome


def _unique_dir(out: Path, path: Path, used: set[str]) -> Path:
    from dfpanel.index.manifest import safe_id

    base = safe_id(path.stem)
    name, k = base, 2
    while name in used:
        name, k = f"{base}-{k}", k + 1
    used.add(name)
    return out / name


def run_detect(
    paths: list[str | os.PathLike],
    detector: PanelDetector,
    out: str | os.PathLike,
    *,
    summary: bool | None = None,
    progress: bool = True,
    on_outcome: Callable[[VideoOutcome, Path], None] | None = None,
) -> DetectRun:
    """Analyse every video under `paths`; a report folder per video under `out`. `summary` None:
    written when a folder was given or there is more than one video."""
    out = check_out_dir(out)
    found = discover_videos(paths, exclude=[out])
    run = DetectRun(skipped=found.skipped, warnings=list(found.warnings))
    used: set[str] = set()
    jobs: list = sorted([*found.videos, *found.failures], key=lambda j: str(j.path))

    def handle(outcome: VideoOutcome) -> None:
        folder = _unique_dir(out, outcome.path, used)
        try:
            write_report(outcome.report, folder, outcome.thumbnails)
        except OSError as exc:  # a full disk fails this video, not the run: the next may fit
            log.warning("%s: could not write its report in %s (%s)", outcome.path, folder, exc)
            outcome = write_failure(outcome, exc)
        run.outcomes.append(outcome)
        run.report_dirs.append(folder)
        if on_outcome:
            on_outcome(outcome, folder)

    def analyse(job: VideoInfo | Unreadable) -> VideoOutcome:
        if isinstance(job, Unreadable):
            return detector.fail(job.path, job.error_kind, job.reason)
        try:
            return detector.analyse(job)
        except Exception as exc:  # a bug on one video must not lose the others; keep its traceback in the log
            log.exception("detection failed on %s", job.path)
            return detector.fail(job.path, "error", f"internal error: {type(exc).__name__}: {exc}")

    if progress and jobs:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        from dfpanel.console import err_console

        with Progress(TextColumn("[bold]detect"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TimeRemainingColumn(), TextColumn("{task.description}"), console=err_console, transient=True) as bar:
            task = bar.add_task("", total=len(jobs))
            for job in jobs:
                bar.update(task, description=job.path.name)
                handle(analyse(job))
                bar.advance(task)
    else:
        for job in jobs:
            handle(analyse(job))

    folder_given = any(Path(p).is_dir() for p in paths)
    if summary or (summary is None and (folder_given or len(run.outcomes) > 1)):
        rows = [summary_row(o.report, d.name) for o, d in zip(run.outcomes, run.report_dirs)]
        try:
            run.summary = write_summary(rows, out)
        except OSError as exc:
            run.summary_error = f"could not write the summary in {out}: {exc.strerror or exc}"
            log.warning("%s", run.summary_error)
    return run

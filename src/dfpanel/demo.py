"""`dfpanel demo`: the whole system on a small synthetic set, on CPU, in minutes.

The demo runs the same commands a user would type (it prints each one), in pipeline order:
synth -> index -> extract -> curriculum (tiny presets, all five specialists) -> eval -> panel fit ->
detect. Every step reuses what an earlier run finished, so an interrupted demo picks up where it stopped.
"""

from __future__ import annotations

import json
import shlex
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.rule import Rule

from dfpanel.errors import DfpanelError

SPECIALISTS = ("bg", "av", "cm", "rr", "tm")
MIX_PSEUDOFAKES = ("av", "cm", "rr", "tm")  # docs/generalisation.md: mix beat supervised-only on their held-out traces; not (yet) BG
STAGES = ("ffpp", "celebdf", "dfdc")


@dataclass
class DemoPlan:
    out: Path
    specialists: Sequence[str] = SPECIALISTS
    videos: dict[str, int] = field(default_factory=lambda: {"ffpp": 10, "celebdf": 6, "dfdc": 4})
    seconds: float = 2.0
    size: str = "320x240"
    frames: int = 16
    workers: int = 2
    seed: int = 0
    # The tiny presets as they ship train for 2 short epochs (enough to show the pipeline in tests);
    # the demo trains longer on every sampled frame so each specialist learns its trace.
    train_overrides: Sequence[str] = ("trainer.max_epochs=4", "data.max_videos=null", "data.frames_per_video=8")
    # Per specialist, on top: pseudo-fakes mixed in where docs/generalisation.md shows they help it on
    # fakes of a trace it never saw.
    specialist_overrides: dict[str, Sequence[str]] = field(
        default_factory=lambda: {s: ("pseudofakes.mode=mix",) for s in MIX_PSEUDOFAKES})

    def data(self, layout: str) -> Path:
        return self.out / "data" / layout

    def manifest(self, layout: str) -> Path:
        return self.out / "manifests" / f"{layout}.jsonl"

    @property
    def cache(self) -> Path:
        return self.out / "cache"

    @property
    def runs(self) -> Path:
        return self.out / "runs"

    @property
    def weights(self) -> Path:
        return self.out / "weights"

    @property
    def reports(self) -> Path:
        return self.out / "reports"


class StepFailed(DfpanelError):
    exit_code = 1


def _run(console: Console, argv: list[str], ok_codes: tuple[int, ...] = (0,)) -> None:
    """Run one dfpanel command in-process, as the user would type it."""
    from dfpanel.cli import main

    console.print(f"[bold cyan]$ dfpanel {shlex.join(argv)}[/]")
    code = main(argv)
    if code not in ok_codes:
        raise StepFailed(f"`dfpanel {shlex.join(argv)}` exited with {code}; fix what it said and re-run `dfpanel demo`")


def collect_weights(plan: DemoPlan, console: Console) -> None:
    """The last stage's best weights of each specialist -> one folder, as `detect --weights` wants."""
    plan.weights.mkdir(parents=True, exist_ok=True)
    for spec in plan.specialists:
        best = plan.runs / spec / STAGES[-1] / "best.safetensors"
        if not best.is_file():
            raise StepFailed(f"{best}: missing after the curriculum; re-run `dfpanel demo`")
        for suffix in (".safetensors", ".json"):
            shutil.copy2(best.with_suffix(suffix), plan.weights / f"{spec}{suffix}")
    console.print(f"weights of {len(plan.specialists)} specialists in {plan.weights}")


def held_out_videos(plan: DemoPlan, per_label: int = 1) -> list[Path]:
    """A real and a fake test video from each dataset, which no specialist trained on."""
    from dfpanel.index.manifest import read_manifest

    picked: list[Path] = []
    for layout in STAGES:
        rows = read_manifest(plan.manifest(layout), split="test")
        for label in (0, 1):
            picked += [r.abspath for r in rows if r.label == label][:per_label]
    return picked


def run_demo(plan: DemoPlan, console: Console | None = None) -> dict:
    console = console or Console()
    plan.out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def step(name: str, fn: Callable[[], None]) -> None:
        console.print(Rule(f"[bold]{name}"))
        t0 = time.perf_counter()
        fn()
        timings[name] = round(time.perf_counter() - t0, 1)

    def synth() -> None:
        for layout in STAGES:
            argv = ["synth", "--layout", layout, "--out", str(plan.data(layout)), "--videos", str(plan.videos[layout]),
                    "--seconds", str(plan.seconds), "--size", plan.size, "--seed", str(plan.seed)]
            _run(console, argv)

    def index() -> None:
        for layout in STAGES:
            _run(console, ["index", str(plan.data(layout)), "--dataset", layout, "--out", str(plan.manifest(layout))])

    def extract() -> None:
        for layout in STAGES:
            _run(console, ["extract", str(plan.manifest(layout)), "--out", str(plan.cache), "--frames", str(plan.frames),
                           "--workers", str(plan.workers)])

    def train() -> None:
        for spec in plan.specialists:
            argv = ["curriculum", "--specialist", spec, "--preset", "tiny", "--data", str(plan.cache),
                    "--out", str(plan.runs), "--manifests", str(plan.out / "manifests")]
            for override in (*plan.train_overrides, *plan.specialist_overrides.get(spec, ())):
                argv += ["--set", override]
            _run(console, argv)
        collect_weights(plan, console)

    def evaluate() -> None:
        argv = ["eval", "--data", str(plan.cache), "--out", str(plan.out / "eval")]
        for spec in plan.specialists:
            argv += ["--weights", str(plan.weights / f"{spec}.safetensors")]
        for layout in STAGES:
            argv += ["--manifest", str(plan.manifest(layout))]
        _run(console, argv)

    def panel() -> None:
        # The combiner learns on validation videos of every stage, never on the test videos below.
        val = plan.out / "manifests" / "val_all.jsonl"
        from dfpanel.index.manifest import read_manifest, write_manifest

        write_manifest([r for layout in STAGES for r in read_manifest(plan.manifest(layout), split="val")], val)
        _run(console, ["panel", "fit", "--weights", str(plan.weights), "--manifest", str(val), "--data", str(plan.cache)])

    def detect() -> None:
        argv = ["detect", *map(str, held_out_videos(plan)), "--weights", str(plan.weights), "--out", str(plan.reports)]
        _run(console, argv, ok_codes=(0, 1))  # 1 = some video could not be analysed, which its report says

    t_start = time.perf_counter()
    step("1/7 synth: synthetic FF++, Celeb-DF and DFDC in their real on-disk layouts", synth)
    step("2/7 index: datasets -> manifests", index)
    step("3/7 extract: faces, crops and audio -> face-track cache", extract)
    step("4/7 train: tiny curriculum FF++ -> Celeb-DF -> DFDC for each specialist", train)
    step("5/7 eval: cross-dataset table", evaluate)
    step("6/7 panel fit: combine the specialists on validation videos", panel)
    step("7/7 detect: held-out real and fake videos", detect)
    total = round(time.perf_counter() - t_start, 1)

    reports = sorted(plan.reports.glob("*/report.html"))
    summary = {"total_s": total, "steps_s": timings, "reports": [str(p) for p in reports]}
    (plan.out / "demo_summary.json").write_text(json.dumps(summary, indent=1))
    console.print(Rule("[bold green]demo finished"))
    console.print(f"total {total:.0f} s; " + ", ".join(f"{k.split(':')[0]} {v:.0f} s" for k, v in timings.items()))
    console.print("Open a report in your browser:")
    for p in reports:
        console.print(f"  file://{p.resolve()}")
    console.print("[dim]These weights learned from synthetic data only: they show the pipeline, they do not detect real deepfakes.[/]")
    return summary

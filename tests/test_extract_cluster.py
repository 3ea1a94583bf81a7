"""Running on a cluster: `extract --shard auto` from a SLURM array or a Kubernetes Indexed Job, and the
example job files in examples/ (they parse, and every dfpanel option they use exists)."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import typer
import yaml

from dfpanel.cli import app, main
from dfpanel.errors import ConfigError
from dfpanel.extract.array_job import resolve_shard

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def slurm(task: int, lo: int, hi: int, step: int = 1, **extra) -> dict:
    count = (hi - lo) // step + 1
    return {"SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_MIN": str(lo), "SLURM_ARRAY_TASK_MAX": str(hi),
            "SLURM_ARRAY_TASK_STEP": str(step), "SLURM_ARRAY_TASK_COUNT": str(count), "SLURM_JOB_ID": "77", **extra}


@pytest.mark.parametrize(("lo", "hi", "step"), [(0, 15, 1), (1, 16, 1), (0, 30, 2), (5, 7, 1)])
def test_slurm_array_tasks_take_every_shard_once(lo, hi, step):
    got = [resolve_shard("auto", slurm(t, lo, hi, step))[0] for t in range(lo, hi + 1, step)]
    n = (hi - lo) // step + 1
    assert got == [(i, n) for i in range(1, n + 1)]


def test_explicit_count_makes_the_task_id_the_zero_based_shard():
    # re-running two failed tasks of 16 alone: sbatch --array=3,7 (an uneven array: fine with auto/N)
    env = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "3", "SLURM_ARRAY_TASK_MAX": "7", "SLURM_ARRAY_TASK_COUNT": "2"}
    assert resolve_shard("auto/16", env)[0] == (8, 16)
    with pytest.raises(ConfigError, match="not one evenly spaced range"):
        resolve_shard("auto", env)
    assert resolve_shard("auto/4", {"JOB_COMPLETION_INDEX": "0"})[0] == (1, 4)


def test_kubernetes_indexed_job_with_the_shard_count_in_the_environment():
    (i, n), source = resolve_shard("auto", {"JOB_COMPLETION_INDEX": "15", "DFPANEL_SHARD_COUNT": "16"})
    assert (i, n) == (16, 16) and "JOB_COMPLETION_INDEX=15" in source
    assert resolve_shard("auto/16", {"JOB_COMPLETION_INDEX": "3", "DFPANEL_SHARD_COUNT": "16"})[0] == (4, 16)


def test_explicit_shards_ignore_the_environment():
    assert resolve_shard("3/8", slurm(0, 0, 3)) == ((3, 8), None)


@pytest.mark.parametrize(("text", "env", "message"), [
    ("auto", {}, "neither SLURM_ARRAY_TASK_ID .* nor JOB_COMPLETION_INDEX"),
    ("auto", {"SLURM_ARRAY_TASK_ID": "1", "JOB_COMPLETION_INDEX": "1"}, "both"),
    ("auto", {"JOB_COMPLETION_INDEX": "2"}, "set DFPANEL_SHARD_COUNT"),
    ("auto", {"JOB_COMPLETION_INDEX": "x", "DFPANEL_SHARD_COUNT": "4"}, "JOB_COMPLETION_INDEX='x' is not an integer"),
    ("auto", {"JOB_COMPLETION_INDEX": "4", "DFPANEL_SHARD_COUNT": "4"}, "outside 1..4"),
    ("auto/4", {"SLURM_ARRAY_TASK_ID": "4"}, "outside 1..4"),
    ("auto", slurm(2, 0, 3, DFPANEL_SHARD_COUNT="8"), "DFPANEL_SHARD_COUNT=8 disagrees with the 4 shards"),
    ("auto/8", {"JOB_COMPLETION_INDEX": "1", "DFPANEL_SHARD_COUNT": "4"}, "disagrees"),
    ("auto", {"SLURM_ARRAY_TASK_ID": "2"}, "SLURM_ARRAY_TASK_COUNT is not set"),
    ("auto/0", {"JOB_COMPLETION_INDEX": "0"}, "expected auto/N"),
    ("auto/x", {"JOB_COMPLETION_INDEX": "0"}, "expected auto/N"),
])  # fmt: skip
def test_missing_or_inconsistent_environment_is_a_one_line_error(text, env, message):
    with pytest.raises(ConfigError, match=message) as err:
        resolve_shard(text, env)
    assert "\n" not in str(err.value)


def test_cli_shard_auto(tmp_path, monkeypatch, capsys):
    from dfpanel.index.manifest import VideoRecord, write_manifest

    rows = [VideoRecord(id=f"v{k}", path=f"v{k}.mp4", label=0, fake_type="real", split="train", dataset="folder",
                        group=f"g{k}", root=str(tmp_path)) for k in range(6)]  # no files: each fails fast
    write_manifest(rows, tmp_path / "m.jsonl")
    for var in ("SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX", "DFPANEL_SHARD_COUNT"):
        monkeypatch.delenv(var, raising=False)
    args = ["extract", str(tmp_path / "m.jsonl"), "--out", str(tmp_path / "c"), "--shard", "auto", "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "neither SLURM_ARRAY_TASK_ID" in err and "Traceback" not in err
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    monkeypatch.setenv("DFPANEL_SHARD_COUNT", "3")
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "shard 2/3 from JOB_COMPLETION_INDEX=1" in out and "(shard 2/3)" in out


# -- the example job files -----------------------------------------------------------------------


def _commands(shell: str) -> list[list[str]]:
    """dfpanel command lines in a shell script (continuations joined), from `dfpanel` on."""
    joined = re.sub(r"\\\n", " ", shell)
    out = []
    for line in joined.splitlines():
        line = line.split(" #")[0].strip()
        if line.startswith("#") or not re.search(r"(^|[\s(])dfpanel\s", line):
            continue
        words = shlex.split(line)
        out.append(words[words.index("dfpanel"):])
    return out


def _check(words: list[str], where: str) -> str:
    """The sub-command `words` runs exists and takes every --option given; returns its name."""
    group = typer.main.get_command(app)
    cmd, k = group, 1
    while hasattr(cmd, "commands"):  # a group (typer's own click)
        assert k < len(words) and words[k] in cmd.commands, f"{where}: no dfpanel command {' '.join(words[:k + 1])}"
        cmd, k = cmd.commands[words[k]], k + 1
    known = {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}
    for word in words[k:]:
        if word.startswith("--"):
            assert word.split("=")[0] in known, f"{where}: `dfpanel {' '.join(words[1:k])}` has no option {word}"
    return " ".join(words[1:k])


@pytest.mark.parametrize("script", sorted(p.name for p in (EXAMPLES / "slurm").glob("*.sbatch")))
def test_slurm_scripts_parse_and_use_existing_options(script):
    path = EXAMPLES / "slurm" / script
    proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = path.read_text()
    assert text.startswith("#!/bin/bash") and "#SBATCH" in text
    commands = _commands(text)
    assert commands, f"{script}: no dfpanel command"
    names = {_check(words, script) for words in commands}
    if script == "extract.sbatch":
        assert names == {"extract"} and "--shard auto" in text and re.search(r"#SBATCH --array=\d+-\d+", text)
    if script == "train.sbatch":
        assert names == {"train"} and "srun" in text and "--num-nodes" in text and "--devices" in text


def test_kubernetes_jobs_parse_and_use_existing_options():
    docs = {p.name: yaml.safe_load(p.read_text()) for p in (EXAMPLES / "k8s").glob("*.yaml")}
    job = docs["extract-indexed-job.yaml"]
    assert job["kind"] == "Job" and job["spec"]["completionMode"] == "Indexed"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    assert int(env["DFPANEL_SHARD_COUNT"]) == job["spec"]["completions"]  # n of --shard auto
    for name, doc in docs.items():
        for c in doc["spec"]["template"]["spec"]["containers"]:
            script = " ".join(c["args"]) if c["command"][:2] == ["/bin/sh", "-c"] else shlex.join(c["command"] + c.get("args", []))
            (words,) = _commands(script)
            _check(words, name)
    assert "--shard" in container["args"][0] and "auto" in container["args"][0]


def test_the_torchrun_line_in_the_docs_uses_existing_options():
    text = (ROOT / "docs" / "training.md").read_text()
    lines = [line for line in re.sub(r"\\\n", " ", text).splitlines() if line.startswith("torchrun ")]
    assert lines
    for line in lines:
        words = shlex.split(line.split(" #")[0])
        assert words[words.index("-m") + 1] == "dfpanel"
        _check(["dfpanel", *words[words.index("-m") + 2:]], "docs/training.md")

"""`dfpanel extract --shard auto`: an array job's task takes its share of the manifest from the
scheduler's environment, so one job script serves every task.

    --shard auto     i and n both from the environment:
                       SLURM array:  n = SLURM_ARRAY_TASK_COUNT, i = (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN)
                                     / SLURM_ARRAY_TASK_STEP + 1; the array must be one evenly spaced range
                                     (--array=0-15, 1-16, 0-30:2, with or without a %limit)
                       Kubernetes Indexed Job: i = JOB_COMPLETION_INDEX + 1, n = DFPANEL_SHARD_COUNT (set it to
                                     the Job's spec.completions; Kubernetes does not expose that to the pod)
    --shard auto/N   n = N; the task id is the 0-based shard index: i = SLURM_ARRAY_TASK_ID + 1 or
                     JOB_COMPLETION_INDEX + 1. Any subset of 0..N-1 works, so failed tasks can be re-run alone
                     (`sbatch --array=3,7 ...`).
DFPANEL_SHARD_COUNT, when set, must agree with n however n was found. Anything missing, malformed,
ambiguous (both schedulers' variables set) or out of range is a one-line ConfigError naming the variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from dfpanel.errors import ConfigError

SLURM_ID, SLURM_MIN, SLURM_MAX, SLURM_STEP, SLURM_COUNT = (
    "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX", "SLURM_ARRAY_TASK_STEP", "SLURM_ARRAY_TASK_COUNT")
K8S_INDEX = "JOB_COMPLETION_INDEX"
COUNT_VAR = "DFPANEL_SHARD_COUNT"


def _int(env: Mapping[str, str], name: str, default: int | None = None) -> int | None:
    value = env.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"--shard auto: {name}={value!r} is not an integer") from None


def resolve_shard(text: str, env: Mapping[str, str] | None = None) -> tuple[tuple[int, int], str | None]:
    """`--shard` -> ((i, n), where it came from): `i/n` as given (source None), or `auto` / `auto/N`
    from the environment (module docstring)."""
    from dfpanel.extract.run import parse_shard

    text = text.strip()
    if text != "auto" and not text.startswith("auto/"):
        return parse_shard(text), None
    env = os.environ if env is None else env
    given_n = None
    if text.startswith("auto/"):
        try:
            given_n = int(text[5:])
        except ValueError:
            given_n = 0
        if given_n < 1:
            raise ConfigError(f"--shard {text!r}: expected auto/N with N >= 1, e.g. auto/16")
    slurm, k8s = env.get(SLURM_ID, "").strip(), env.get(K8S_INDEX, "").strip()
    if slurm and k8s:
        raise ConfigError(f"--shard {text}: both {SLURM_ID} and {K8S_INDEX} are set; pass --shard i/n explicitly")
    if not slurm and not k8s:
        raise ConfigError(f"--shard {text}: neither {SLURM_ID} (a SLURM array task) nor {K8S_INDEX} (a Kubernetes "
                          "Indexed Job) is set; run it as an array task or pass --shard i/n")
    count_var = _int(env, COUNT_VAR)

    if slurm:
        task = _int(env, SLURM_ID)
        if given_n is not None:
            i, n, source = task + 1, given_n, f"{SLURM_ID}={task} (0-based) of {given_n}"
        else:
            lo, step, count = _int(env, SLURM_MIN, 0), _int(env, SLURM_STEP, 1), _int(env, SLURM_COUNT)
            hi = _int(env, SLURM_MAX)
            if count is None:
                raise ConfigError(f"--shard auto: {SLURM_COUNT} is not set; pass --shard auto/N with the number of shards")
            if step < 1 or (hi is not None and hi != lo + (count - 1) * step) or (task - lo) % step:
                raise ConfigError(
                    f"--shard auto: the array ({SLURM_MIN}={lo}, {SLURM_MAX}={hi}, {SLURM_STEP}={step}, {SLURM_COUNT}={count}) "
                    "is not one evenly spaced range; use --array=0-N-1 (or pass --shard auto/N, task id = 0-based shard)")
            i, n = (task - lo) // step + 1, count
            source = f"{SLURM_ID}={task} ({SLURM_MIN}={lo}{f', {SLURM_STEP}={step}' if step != 1 else ''}, {SLURM_COUNT}={count})"
    else:
        index = _int(env, K8S_INDEX)
        n = given_n if given_n is not None else count_var
        if n is None:
            raise ConfigError(f"--shard auto: {K8S_INDEX} is set but not the number of shards; set {COUNT_VAR} to the "
                              "Job's completions (or pass --shard auto/N)")
        i, source = index + 1, f"{K8S_INDEX}={index} (0-based) of {n}"

    if count_var is not None and count_var != n:
        raise ConfigError(f"--shard {text}: {COUNT_VAR}={count_var} disagrees with the {n} shards of {source}")
    if not 1 <= i <= n:
        raise ConfigError(f"--shard {text}: {source} gives shard {i}, outside 1..{n}; the task id must be the "
                          f"0-based shard index, 0..{n - 1}")
    return (i, n), source

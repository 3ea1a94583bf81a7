"""`synth` is deterministic per seed across processes, and audio-only fakes carry the real video's stream.

Each run is a fresh interpreter with its own PYTHONHASHSEED, so anything seeded from `hash()` of a
string, from time or from set/dict order would show up as different bytes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dfpanel

_SCRIPT = r"""
import hashlib, json, sys
from pathlib import Path
import av
from dfpanel.synth.render import Clip, Output, render_clip

root = Path(sys.argv[1])
clip = Clip("det", identity=31, scene=32, speech=33, seconds=1.0, size=(160, 120), fps=25.0)
outs = [
    Output("real.mp4", 0, "real", audio=True),
    Output("shift.mp4", 1, "audio_shift", ("audio_shift",), audio=True, trace_seed=1),
    Output("replace.mp4", 1, "audio_replace", ("audio_replace",), audio=True, trace_seed=2),
    Output("swap.mp4", 1, "face_swap", ("face_swap",), source=34, trace_seed=3),
]
render_clip(clip, outs, root)
result = {}
for o in outs:
    with av.open(str(root / o.path)) as c:
        video = b"".join(bytes(p) for p in c.demux(video=0))
    result[o.path] = {"file": hashlib.sha256((root / o.path).read_bytes()).hexdigest(),
                      "video": hashlib.sha256(video).hexdigest()}
print(json.dumps(result))
"""


def _generate(tmp_path: Path, hash_seed: str) -> dict:
    env = dict(os.environ, PYTHONHASHSEED=hash_seed,
               PYTHONPATH=os.pathsep.join([str(Path(dfpanel.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / f"h{hash_seed}"
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(out)], env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_same_seed_gives_the_same_bytes_in_other_processes_and_audio_fakes_share_the_video(tmp_path):
    a, b = _generate(tmp_path, "1"), _generate(tmp_path, "2")
    assert a == b  # byte-identical files whatever the process's hash seed
    real = a["real.mp4"]["video"]
    assert a["shift.mp4"]["video"] == real and a["replace.mp4"]["video"] == real  # the same encoded frames
    assert a["shift.mp4"]["file"] != a["real.mp4"]["file"] != a["replace.mp4"]["file"]  # only the sound differs
    assert a["swap.mp4"]["video"] != real

"""How learnable is each synthetic trace? Simple per-video features + logistic regression, grouped CV.

For N clips, render the real video and one fake per visual manipulation (face_swap, relight,
recompress, temporal_jitter) at a given crf, decode, and compute a dozen hand-made features per video
(face/context sharpness, face/context colour, frame-to-frame face brightness jumps, 8x8 column-jump
profile). Baseline (same run): the same classifier on the same videos with each real/fake pair's labels
swapped at random (a null; small grouped CV sits below 0.5 there). A trace well above its null is
learnable even by this crude model; one near it is left for the specialist CNN to find (or is too weak).

    .venv/bin/python benchmarks/synth_traces.py --clips 16 --crf 23

Prints video-level AUC per trace; writes benchmarks/results/synth_traces.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

MANIPULATIONS = ("face_swap", "relight", "recompress", "temporal_jitter")


def features(frames, boxes) -> np.ndarray:
    import cv2

    hf, col, lum, blk = [], [], [], []
    for f, b in zip(frames, boxes):
        x1, y1, x2, y2 = b.astype(int)
        w, h = x2 - x1, y2 - y1
        cx1, cy1, cx2, cy2 = x1 + w // 4, y1 + h // 4, x2 - w // 4, y2 - h // 4
        X1, Y1 = max(x1 - w // 2, 0), max(y1 - h // 2, 0)
        X2, Y2 = min(x2 + w // 2, f.shape[1]), min(y2 + h // 2, f.shape[0])
        face, ctx = f[cy1:cy2, cx1:cx2].astype(np.float32), f[Y1:Y2, X1:X2].astype(np.float32)
        g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32)
        lap = np.abs(cv2.Laplacian(g, cv2.CV_32F))
        hf.append(lap[cy1:cy2, cx1:cx2].mean() / (lap[Y1:Y2, X1:X2].mean() + 1e-3))
        # the same skin under the scene's light: forehead-side cheeks outside the inner face
        cheek = np.concatenate([f[cy1:cy2, max(x1 - w // 8, 0):x1 + w // 16], f[cy1:cy2, x2 - w // 16:x2 + w // 8]]).astype(np.float32)
        col.append(np.concatenate([face.mean((0, 1)) / (ctx.mean((0, 1)) + 1e-3), face.mean((0, 1)) / (cheek.mean((0, 1)) + 1e-3)]))
        lum.append(face.mean() / (ctx.mean() + 1e-3))
        dx = np.abs(np.diff(g[max(y1, 0):y2, max((x1 // 8) * 8, 0):x2], axis=1)).mean(0)
        prof = np.array([dx[k::8].mean() for k in range(8)])
        prof /= prof.mean()
        blk.append([*np.sort(prof[1:])[::-1][:2], prof[0]])
    col, lum = np.array(col), np.array(lum)
    return np.concatenate([[np.mean(hf)], col.mean(0), col.mean(0) / col.mean(), [np.abs(np.diff(lum)).mean(), lum.std()],
                           np.mean(blk, 0)])


def auc(pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.array([v for a, b in pairs for v in (a, b)])
    y = np.array([0, 1] * len(pairs))
    groups = np.repeat(np.arange(len(pairs)), 2)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    p = cross_val_predict(model, x, y, groups=groups, cv=GroupKFold(4), method="predict_proba")[:, 1]
    return float(roc_auc_score(y, p))


def main() -> None:
    import av

    from dfpanel.synth.render import Clip, Output, face_boxes, render_clip

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--crf", type=int, default=23)
    ap.add_argument("--seconds", type=float, default=1.0)
    args = ap.parse_args()
    feats: dict[str, list] = {m: [] for m in ("real", *MANIPULATIONS)}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.clips):
            clip = Clip(f"c{k}", 100 + k, 200 + k, 300 + k, args.seconds, (320, 240), 25.0)
            outs = [Output("real.mp4", 0, "real", crf=args.crf)] + [
                Output(f"{m}.mp4", 1, m, (m,), crf=args.crf, source=400 + k, trace_seed=k) for m in MANIPULATIONS]
            render_clip(clip, outs, Path(tmp) / str(k))
            boxes = face_boxes(clip, range(clip.n_frames))
            for o in outs:
                with av.open(str(Path(tmp) / str(k) / o.path)) as c:
                    frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
                feats[o.fake_type].append(features(frames, boxes))
    reals = feats["real"]
    results = {"clips": args.clips, "crf": args.crf}
    print(f"crf {args.crf}, {args.clips} clips: video AUC (null = labels swapped at random within each pair)")
    rng = np.random.default_rng(0)
    for m in MANIPULATIONS:
        pairs = list(zip(reals, feats[m]))
        null = np.mean([auc([(a, b) if rng.random() < 0.5 else (b, a) for a, b in pairs]) for _ in range(5)])
        results[m] = {"auc": round(auc(pairs), 3), "null_auc": round(float(null), 3)}
        print(f"  {m:16s} AUC {results[m]['auc']:.2f}  null {null:.2f}  ({results[m]['auc'] - null:+.2f})")
    out = Path(__file__).parent / "results" / "synth_traces.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""Forward cost of each specialist against its bare timm backbone, measured in the same run.

    python benchmarks/models.py                                   # B4, 224x224, batch 32 on a GPU (4 on CPU)
    python benchmarks/models.py --batch 2 --repeats 3 --threads 1 # B4 at a small batch on a shared CPU
    python benchmarks/models.py --backbone tiny --size 112 --batch 8

For each specialist: samples/s of the whole forward (view tensors in, logits out; the backbone sees
one image per sample, AV/TM samples are clips), its cost as a ratio of the bare backbone's
`forward_features` on the same batch (goal: at most 1.25x), parameters, and GFLOPs per sample
(torch.utils.flop_counter). Writes benchmarks/results/models.json and models.md (a table the README
can include).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

GOAL = 1.25
RESULTS = Path(__file__).parent / "results"


def gflops(fn, *args) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:  # not under no_grad: its module tracker needs autograd
        fn(*args)
    return counter.get_total_flops() / 1e9


def _timed(fn, arg) -> float:
    start = time.perf_counter()
    fn(arg)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def interleaved(base_fn, base_arg, fn, arg, warmup: int, repeats: int) -> tuple[float, float]:
    """Median seconds of (base, fn), their runs alternated so that load from other processes, clock
    changes and cache state hit both alike."""
    base, mine = [], []
    with torch.inference_mode():
        for _ in range(warmup):
            base_fn(base_arg)
            fn(arg)
        for _ in range(repeats):
            base.append(_timed(base_fn, base_arg))
            mine.append(_timed(fn, arg))
    return statistics.median(base), statistics.median(mine)


def main(argv=None) -> dict:
    from dfpanel.models.backbone import timm_name
    from dfpanel.models.specialists import create_specialist, list_specialists

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="efficientnet_b4")
    p.add_argument("--batch", type=int, default=None, help="default 32 on a GPU, 4 on CPU")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--clip-len", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--specialists", default=",".join(list_specialists()))
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.batch is None:  # B4 at batch 32 takes many minutes on a laptop CPU; `make bench` runs this
        args.batch = 32 if device.type == "cuda" else 4
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    torch.manual_seed(0)

    import timm

    bare = timm.create_model(timm_name(args.backbone), pretrained=False, num_classes=0, global_pool="").eval()
    bare = bare.to(device, memory_format=fmt)
    images = torch.rand(args.batch, 3, args.size, args.size, device=device).contiguous(memory_format=fmt)
    base = {
        "params_m": sum(p.numel() for p in bare.parameters()) / 1e6,
        "gflops": gflops(bare.forward_features, images[:1].clone()),
    }
    print(f"bare {args.backbone}: {base['params_m']:.2f} M params, {base['gflops']:.2f} GFLOPs")

    rows, base_times = {}, []
    for name in args.specialists.split(","):
        model = create_specialist(name, backbone=args.backbone, image_size=args.size, clip_len=args.clip_len).eval()
        model = model.to(device, memory_format=fmt)
        inputs = {k: v.to(device) for k, v in model.example_inputs(args.batch).items()}
        inputs = {k: v.contiguous(memory_format=fmt) if v.dim() == 4 else v for k, v in inputs.items()}
        base_s, took = interleaved(bare.forward_features, images, model, inputs, args.warmup, args.repeats)
        base_times.append(base_s)
        one = {k: v[:1].clone() for k, v in inputs.items()}
        flops = gflops(model, one)
        module_flops = gflops(model.module, one)
        rows[name] = {
            "samples_per_s": args.batch / took,
            "backbone_samples_per_s": args.batch / base_s,
            "cost_vs_backbone": took / base_s,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "gflops": flops,
            "gflops_vs_backbone": flops / base["gflops"],
            "module_gflops": module_flops,
            "features": model.module_channels * 49,
            "within_goal": took / base_s <= GOAL,
        }
        r = rows[name]
        print(f"{name}: {r['samples_per_s']:.1f} samples/s, cost x{r['cost_vs_backbone']:.2f} of the backbone, "
              f"{r['params_m']:.2f} M params, {r['gflops']:.2f} GFLOPs (x{r['gflops_vs_backbone']:.2f})")
        del model

    base["samples_per_s"] = args.batch / statistics.median(base_times)
    result = {
        "benchmark": "models",
        "config": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "device": str(device),
                   "torch_threads": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__},
        "goal_cost_vs_backbone": GOAL,
        "backbone": base,
        "specialists": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "models.json").write_text(json.dumps(result, indent=1))
    (args.out / "models.md").write_text(markdown(result))
    return result


def markdown(result: dict) -> str:
    c, b = result["config"], result["backbone"]
    lines = [
        f"Specialist cost against the bare `{c['backbone']}` backbone ({c['size']}x{c['size']}, batch {c['batch']}, "
        f"{c['device']}, {c['torch_threads']} threads; median of {c['repeats']} runs, each specialist's runs alternated with "
        f"the backbone's). Goal: at most {result['goal_cost_vs_backbone']}x. AV and TM samples are clips of {c['clip_len']} frames.",
        "",
        "| model | samples/s | cost vs backbone | params (M) | GFLOPs/sample | GFLOPs vs backbone | module GFLOPs | module features |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| bare backbone | {b['samples_per_s']:.1f} | 1.00x | {b['params_m']:.2f} | {b['gflops']:.2f} | 1.00x | - | - |",
    ]
    for name, r in result["specialists"].items():
        lines.append(
            f"| {name.upper()} | {r['samples_per_s']:.1f} | {r['cost_vs_backbone']:.2f}x | {r['params_m']:.2f} | {r['gflops']:.2f} | "
            f"{r['gflops_vs_backbone']:.2f}x | {r['module_gflops']:.3f} | {r['features']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

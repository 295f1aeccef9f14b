"""``scripts/gpu_check.sh``'s Python entry: the GPU figures ``bench`` cannot give on a CPU.

At the papers' training size (``paper-real``: RRDBNet 64x23, LR 32 px, batch 16) and for each
speed mode (fp32; bf16; bf16 + channels_last; bf16 + channels_last + compile) it times every
method's step interleaved with clean ESRGAN (:func:`robustsr_bench.bench.run_bench`), and reports
the step ratio, achieved TFLOP/s (FLOPs counted by ``torch.utils.flop_counter``'s formulas), the
fraction of the GPU's dense bf16 peak (MFU), peak memory, the BasicSR peer ratio (fp32), and a
1-GPU NCCL data-parallel run of the trainer (the gradient all-reduce path, world size 1) against
the same steps without it. Writes ``<out>/bench_gpu.md`` and ``bench_gpu.json``.

``--device cpu`` with tiny ``--set`` overrides runs every path on a CPU (the tests do), except
NCCL, which is then gloo.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .bench import BenchOptions, random_batch, resolve, run_bench, size_overrides
from .config import parse_overrides
from .distributed import Group
from .files import atomic_write_text

MODES: dict[str, dict[str, Any]] = {
    "fp32": {},
    "bf16": {"runtime.bf16": True, "runtime.bf16_cpu": True},
    "bf16+channels_last": {"runtime.bf16": True, "runtime.bf16_cpu": True,
                           "runtime.channels_last": True},
    "bf16+channels_last+compile": {"runtime.bf16": True, "runtime.bf16_cpu": True,
                                   "runtime.channels_last": True, "runtime.compile": True},
}
# Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, from the vendors' data sheets.
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0,
                    "A10": 125.0, "RTX 4090": 165.0, "A6000": 155.0}


def bf16_peak(device: torch.device, given: float | None) -> float | None:
    """``--peak-tflops``, else the data-sheet peak of the GPU's model, else None (unknown)."""
    if given:
        return given
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)


def mode_rows(report: dict[str, Any], mode: str, peak: float | None) -> list[dict[str, Any]]:
    """One row per method of one mode's bench report, with TFLOP/s and MFU."""
    size = report["sizes"][0]
    rows = []
    for r in size["steps"]:
        tflops = r["gflop_s"] / 1e3
        rows.append({"mode": mode, "variant": r["variant"], "reference": r["reference"],
                     "step_ms": r["step_ms"], "ratio": r["ratio"],
                     "ratio_to_esrgan": r["ratio_to_esrgan"], "tflop_s": tflops,
                     "mfu": tflops / peak if peak else None, "peak_mb": r["peak_mb"]})
    return rows


def ddp_overhead(size: str, options: BenchOptions, steps: int) -> dict[str, Any]:
    """ESRGAN steps of one trainer with and without the data-parallel path (gradients, buffers
    and losses all-reduced over a 1-process NCCL group; gloo on CPU), interleaved."""
    import torch.distributed as dist

    from .bench import build_trainer

    device = torch.device(options.device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    store = dist.HashStore()
    dist.init_process_group(backend, store=store, rank=0, world_size=1)
    try:
        cfg = resolve("esrgan", "paper", size_overrides(size, options))
        with tempfile.TemporaryDirectory() as tmp:
            trainer = build_trainer(cfg, Path(tmp))
            groups = {"single": trainer.group, backend: _AllReduceGroup(0, 1, 0)}
            times: dict[str, list[float]] = {label: [] for label in groups}
            for step in range(steps + 1):
                for label, group in groups.items():
                    trainer.group = group
                    batch = random_batch(cfg, trainer.device, seed=step)
                    _sync(device)
                    start = time.perf_counter()
                    trainer.train_step(batch, step)
                    _sync(device)
                    if step:  # the first round warms up
                        times[label].append(time.perf_counter() - start)
    finally:
        dist.destroy_process_group()
    single, multi = (statistics.median(v) for v in times.values())
    return {"backend": backend, "single_ms": 1e3 * single, "ddp_ms": 1e3 * multi,
            "ratio": multi / single, "steps": steps}


class _AllReduceGroup(Group):
    """A one-process :class:`Group` that still takes the all-reduce path (``active``)."""

    @property
    def active(self) -> bool:
        return True


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    peak = result["bf16_peak_tflops"]
    peak_text = f"{peak:.0f} TFLOP/s" if peak else "unknown (pass --peak-tflops)"
    header = (f"GPU: {m['gpu'] or 'none'} ({m['device']}), torch {m['torch']}; size "
              f"{result['size']}; bf16 peak used for MFU: {peak_text}. FLOPs by "
              f"torch.utils.flop_counter formulas (convolutions, matmuls).")
    columns = ("| mode | method | step ms | x reference | reference | x esrgan | TFLOP/s | MFU "
               "| peak MB |")
    lines = ["# GPU check: training-step cost, throughput and MFU at the papers' size", "",
             header, "", columns, "|---|---|---:|---:|---|---:|---:|---:|---:|"]
    for r in result["rows"]:
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        lines.append(f"| {r['mode']} | {r['variant']} | {r['step_ms']:.1f} | {r['ratio']:.2f} "
                     f"| {r['reference']} | {r['ratio_to_esrgan']:.2f} | {r['tflop_s']:.2f} "
                     f"| {mfu} | {r['peak_mb']:.0f} |")
    if result.get("peer"):
        p = result["peer"]
        lines += ["", (f"Peer (fp32): our ESRGAN step {p['ours_ms']:.1f} ms vs BasicSR's "
                       f"{p['basicsr_ms']:.1f} ms, ratio {p['ratio']:.2f} "
                       f"(IQR {p['ratio_iqr']:.2f}).")]
    d = result["ddp"]
    lines += ["", (f"Data-parallel path, 1 process ({d['backend']}): {d['ddp_ms']:.1f} ms per "
                   f"ESRGAN step vs {d['single_ms']:.1f} ms without, ratio {d['ratio']:.2f} "
                   f"(median of {d['steps']})."), ""]
    return "\n".join(lines)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m robustsr_bench.gpu_check", description=__doc__)
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", default="results")
    p.add_argument("--size", default="paper-real", choices=("paper-real", "paper"))
    p.add_argument("--patch", type=int, default=16, help="with --size paper: LR patch px")
    p.add_argument("--batch", type=int, default=2, help="with --size paper: batch")
    p.add_argument("--methods", default="esrgan,rsr,and,bapd")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, if not listed")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--dry-run", action="store_true", help="print the plan, measure nothing")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        print(f"--modes {','.join(unknown)} is invalid; expected some of: {', '.join(MODES)}")
        return 2
    extra = parse_overrides(args.overrides)
    plan = [BenchOptions(methods=args.methods.split(","), sizes=[args.size],
                         repeats=args.repeats, warmup=args.warmup, patch=args.patch,
                         batch=args.batch, device=args.device, infer_lr=64, infer_tile=32,
                         loader_batches=2, peer=mode == "fp32",
                         overrides={**extra, **MODES[mode]}) for mode in modes]
    if args.dry_run:
        for mode, opts in zip(modes, plan):
            print(f"{mode}: {args.size}, methods {','.join(opts.methods)}, "
                  f"{opts.warmup}+{opts.repeats} rounds, --set {opts.overrides}")
        print(f"ddp: 1-process group, ESRGAN, {args.repeats} steps; writes "
              f"{Path(args.out) / 'bench_gpu.md'}")
        return 0
    device = torch.device(args.device)
    peak = bf16_peak(device, args.peak_tflops)
    result: dict[str, Any] = {"size": args.size, "bf16_peak_tflops": peak, "rows": []}
    for mode, opts in zip(modes, plan):
        with tempfile.TemporaryDirectory() as tmp:
            report = run_bench(opts, Path(tmp))
        result["machine"] = report["machine"]
        result["rows"] += mode_rows(report, mode, peak)
        result.setdefault("peer", report["sizes"][0].get("peer"))
        print(f"gpu_check: {mode} done", flush=True)
    result["ddp"] = ddp_overhead(args.size, plan[0], args.repeats)
    out = Path(args.out)
    atomic_write_text(out / "bench_gpu.json", json.dumps(result, indent=2, default=str) + "\n")
    atomic_write_text(out / "bench_gpu.md", render(result))
    print(render(result))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())

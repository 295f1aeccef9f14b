"""Command line: argument parsing only; every command calls one function elsewhere."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from .errors import UserError

LIST_KINDS = ("methods", "ablations", "profiles", "suites", "metrics")


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="esrgan", help="method name (see `list methods`)")
    p.add_argument("--ablation", default="", help="ablation name(s), joined with '+'")
    p.add_argument("--profile", default="smoke", help="smoke (CPU, minutes) or paper")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set attack.eps=12/255 (repeatable)")
    p.add_argument("--init", help="initial generator checkpoint (= --set train.init=PATH)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: auto)")
    p.add_argument("--workdir", help="where runs and caches live (default $ROBUSTSR_WORKDIR or ./work)")
    p.add_argument("--force", action="store_true", help="redo the run even if it finished")


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", help="where the runs are (default $ROBUSTSR_WORKDIR or ./work)")
    p.add_argument("--out", default="results", help="output folder (default: results)")
    p.add_argument("--sweep", help="only the runs of configs/sweeps/NAME.yaml")
    p.add_argument("--method", dest="methods", action="append", default=[],
                   help="only this method (repeatable)")
    p.add_argument("--profile", default="smoke", help="only runs of this profile (default smoke)")
    p.add_argument("--metrics", help="comma-separated metrics (default: every registry metric "
                   "recorded; e.g. psnr_y,kernel_psnr,seconds)")
    p.add_argument("--include-stale", action="store_true",
                   help="also show runs whose training config differs from configs/")
    p.add_argument("--crop", default="96,0.5,0.4", metavar="SIZE,CX,CY",
                   help="visual comparison crop: size in HR pixels, centre as image fractions")
    p.add_argument("--check", action="store_true",
                   help="exit 1 if the committed text outputs differ from what the records give")


def _sweep_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep", help="sweep name (configs/sweeps/<name>.yaml) or a YAML path")
    p.add_argument("--launcher", choices=("debug", "local", "slurm"), default="local",
                   help="debug: in this process; local: submitit on this machine; slurm: job arrays")
    p.add_argument("--parallel", type=int, default=2, help="local: runs at once (default 2)")
    p.add_argument("--profile", help="replace the sweep's profile(s), e.g. smoke for a dry run")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field in every run (repeatable)")
    p.add_argument("--workdir", help="where runs and caches live (default $ROBUSTSR_WORKDIR or ./work)")
    p.add_argument("--dry-run", action="store_true", help="print the planned run ids only")
    p.add_argument("--wait", action="store_true", help="slurm: block with a progress bar until done")
    s = p.add_argument_group("slurm (override the sweep file's slurm: section)")
    for flag, kind in (("partition", str), ("account", str), ("qos", str), ("constraint", str),
                       ("gpus-per-node", int), ("cpus-per-task", int), ("mem-gb", float),
                       ("time-min", int), ("array-parallelism", int), ("signal-delay-s", int)):
        s.add_argument(f"--{flag}", type=kind)
    s.add_argument("--sbatch", dest="extra", action="append", default=[], metavar="ARG",
                   help="extra sbatch option, e.g. --sbatch=--exclusive (repeatable)")
    s.add_argument("--setup", action="append", default=[], metavar="LINE",
                   help="shell line run before each job, e.g. 'module load cuda' (repeatable)")


def _status_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep", nargs="?", help="one sweep (default: every submitted sweep)")
    p.add_argument("--wait", action="store_true", help="block with a progress bar until done")
    p.add_argument("--workdir", help="where runs and caches live (default $ROBUSTSR_WORKDIR or ./work)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robustsr_bench", description=(
        "Benchmark and ablation harness for robust real-world super-resolution."))
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train and evaluate one method/ablation; prints its table")
    _run_args(run)
    lst = sub.add_parser("list", help="list methods, ablations, profiles, suites or metrics")
    lst.add_argument("kind", choices=LIST_KINDS)
    lst.add_argument("--method", help="with `ablations`: only this method")
    _report_args(sub.add_parser("report", help="tables, plots and visual comparisons from the "
                                "run records (into results/)"))
    wts = sub.add_parser("weights", help="check or fetch the pretrained files (offline cache)")
    wts.add_argument("action", choices=("check", "fetch"))
    wts.add_argument("names", nargs="*", help="weight files and/or metric names (default: all)")
    wts.add_argument("--from", dest="source", metavar="DIR",
                     help="fetch: copy from DIR (flat, or laid out like $TORCH_HOME) instead of "
                          "downloading")
    wts.add_argument("--force", action="store_true", help="fetch: replace files already present")
    _sweep_args(sub.add_parser("sweep", help="launch a sweep file's runs (debug, local or slurm)"))
    _status_args(sub.add_parser("status", help="per run of a sweep: pending/running/done/failed"))
    return parser


def _overrides(args: argparse.Namespace) -> dict:
    from .config import parse_overrides

    overrides = parse_overrides(args.overrides)
    if args.init:
        overrides["train.init"] = args.init
    if args.device:
        overrides["runtime.device"] = args.device
    return overrides


def cmd_run(args: argparse.Namespace) -> int:
    from . import registry, results, runner
    from .report import run_table

    cfg = registry.resolve_config(args.method, args.profile, args.ablation, args.seed,
                                  _overrides(args))
    root = results.workdir(args.workdir)
    run = runner.execute(cfg, root, force=args.force)
    reference = runner.execute(runner.reference_config(cfg), root)
    print(f"\nrun {run.run_id} -> {run.path}\n")
    print(run_table([reference, run], [*cfg.eval.metrics, *cfg.eval.optional_metrics],
                    cfg.eval.suites))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from .listing import render

    print(render(args.kind, args.method))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .report import check_report, options_from_cli, write_report
    from .results import workdir

    root, out = workdir(args.workdir), Path(args.out)
    options = options_from_cli(args.sweep, args.methods, args.profile, args.metrics,
                               args.include_stale, args.crop)
    if args.check:
        differing = check_report(root, out, options)
        for name in differing:
            print(f"differs: {out / name}", file=sys.stderr)
        print(f"{out}: {'out of date' if differing else 'matches the run records'}")
        return 1 if differing else 0
    written = write_report(root, out, options)
    print(f"wrote {len(written)} text files, tables, figures and {out / 'README.md'}")
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    """Exit status 1 when a named file is still missing or corrupt (scriptable before a job)."""
    from . import weights

    if args.action == "fetch":
        statuses = weights.fetch(args.names, args.source, progress=sys.stderr.isatty(),
                                 force=args.force)
    else:
        statuses = weights.check(args.names)
    print(weights.status_table(statuses))
    return 0 if all(s.usable for s in statuses) else 1


_SLURM_FLAGS = ("partition", "account", "qos", "constraint", "gpus_per_node", "cpus_per_task",
                "mem_gb", "time_min", "array_parallelism", "signal_delay_s", "extra", "setup")


def cmd_sweep(args: argparse.Namespace) -> int:
    from .config import parse_overrides
    from .launch import sweep_command
    from .results import workdir

    overrides = parse_overrides(args.overrides)
    return sweep_command(args.sweep, args.launcher, workdir(args.workdir), overrides, args.profile,
                         {k: getattr(args, k) for k in _SLURM_FLAGS}, args.parallel,
                         args.dry_run, args.wait)


def cmd_status(args: argparse.Namespace) -> int:
    from .launch import status_command
    from .results import workdir

    return status_command(args.sweep, workdir(args.workdir), args.wait)


COMMANDS = {"run": cmd_run, "list": cmd_list, "report": cmd_report, "weights": cmd_weights,
            "sweep": cmd_sweep, "status": cmd_status}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume from the last checkpoint",
              file=sys.stderr)
        return 130

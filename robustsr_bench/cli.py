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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robustsr_bench", description=(
        "Benchmark and ablation harness for robust real-world super-resolution."))
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train and evaluate one method/ablation; prints its table")
    _run_args(run)
    lst = sub.add_parser("list", help="list methods, ablations, profiles, suites or metrics")
    lst.add_argument("kind", choices=LIST_KINDS)
    lst.add_argument("--method", help="with `ablations`: only this method")
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
    print(run_table([reference, run], cfg.eval.metrics, cfg.eval.suites))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from .listing import render

    print(render(args.kind, args.method))
    return 0


COMMANDS = {"run": cmd_run, "list": cmd_list}


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

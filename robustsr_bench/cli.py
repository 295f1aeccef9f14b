"""Command line: argument parsing only; every command calls one function elsewhere."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

from .errors import UserError
from .launchers import LAUNCHERS  # names and help only: executors are imported when used

LIST_KINDS = ("methods", "ablations", "profiles", "suites", "metrics", "datasets", "zoo")
DATA_ROOT_HELP = "root of the datasets (= --set data.root=DIR; default $ROBUSTSR_DATA)"
WORKDIR_HELP = "where runs and caches live (default $ROBUSTSR_WORKDIR or ./work)"


def _set_arg(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=help_text)


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="esrgan", help="method name (see `list methods`)")
    p.add_argument("--ablation", default="", help="ablation name(s), joined with '+'")
    p.add_argument("--profile", default="smoke", help="smoke (CPU, minutes) or paper")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", metavar="S,S,...", help="run each of these seeds (e.g. 0,1,2) and "
                   "show means with paired 95%% CIs over seeds x images (replaces --seed)")
    _set_arg(p, "override a config field, e.g. --set attack.eps=12/255 (repeatable)")
    p.add_argument("--init", help="initial generator checkpoint (= --set train.init=PATH)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: auto)")
    p.add_argument("--data", help="train on this dataset (see `list datasets`; "
                                  "= --set data.train=NAME)")
    p.add_argument("--data-root", help=DATA_ROOT_HELP)
    p.add_argument("--workdir", help=WORKDIR_HELP)
    p.add_argument("--force", action="store_true", help="redo the run even if it finished")
    p.add_argument("--gpus", "--nproc", dest="world_size", type=int, metavar="N",
                   help="train data-parallel in N local processes, one per GPU (gloo on CPU); "
                        "train.batch_size stays the global batch (= --set runtime.world_size=N)")


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
    p.add_argument("--suites", help="comma-separated suites for the table and verdict columns "
                   "(default: the profile's, then any other suite the compared runs share)")
    p.add_argument("--crop", default="96,0.5,0.4", metavar="SIZE,CX,CY",
                   help="visual comparison crop: size in HR pixels, centre as image fractions")
    p.add_argument("--check", action="store_true",
                   help="exit 1 if the committed text outputs differ from what the records give")


def _sweep_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep", help="sweep name (configs/sweeps/<name>.yaml) or a YAML path")
    p.add_argument("--launcher", choices=tuple(LAUNCHERS), default="local",
                   help="; ".join(f"{name}: {x.help}" for name, x in LAUNCHERS.items()))
    p.add_argument("--parallel", type=int, default=2, help="local: runs at once (default 2)")
    p.add_argument("--profile", help="replace the sweep's profile(s), e.g. smoke for a dry run")
    _set_arg(p, "override a config field in every run (repeatable)")
    p.add_argument("--workdir", help=WORKDIR_HELP)
    p.add_argument("--dry-run", action="store_true", help="print the planned run ids only")
    p.add_argument("--data-root", help=DATA_ROOT_HELP)
    p.add_argument("--wait", action="store_true",
                   help="slurm: block with a progress bar until done")
    s = p.add_argument_group("slurm (override the sweep file's slurm: section)")
    for flag, kind in (("partition", str), ("account", str), ("qos", str), ("constraint", str),
                       ("gpus-per-node", int), ("tasks-per-node", int), ("cpus-per-task", int),
                       ("mem-gb", float), ("time-min", int), ("array-parallelism", int),
                       ("signal-delay-s", int)):
        s.add_argument(f"--{flag}", type=kind)
    s.add_argument("--sbatch", dest="extra", action="append", default=[], metavar="ARG",
                   help="extra sbatch option, e.g. --sbatch=--exclusive (repeatable)")
    s.add_argument("--setup", action="append", default=[], metavar="LINE",
                   help="shell line run before each job, e.g. 'module load cuda' (repeatable)")


def _status_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep", nargs="?", help="one sweep (default: every submitted sweep)")
    p.add_argument("--wait", action="store_true", help="block with a progress bar until done")
    p.add_argument("--workdir", help=WORKDIR_HELP)


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("prepare", "verify"))
    p.add_argument("name", help="dataset name (see `list datasets`)")
    p.add_argument("--data-root", "--root", dest="data_root", help=DATA_ROOT_HELP)
    p.add_argument("--scale", type=int, help="LR scale (default 4)")
    p.add_argument("--split", help="prepare: default the first split; verify: default all")
    p.add_argument("--workers", type=int, default=0, help="processes (default: all CPU cores)")
    p.add_argument("--crop", type=int, default=480, help="prepare: sub-image size (default 480)")
    p.add_argument("--step", type=int, default=240, help="prepare: crop step (default 240)")
    p.add_argument("--thresh", type=int, default=0,
                   help="prepare: add a last crop flush with the edge when more than this many "
                        "pixels are left over (default 0)")
    p.add_argument("--no-edges", dest="edges", action="store_false",
                   help="prepare: skip the edge maps (train_EDGE_sub)")
    p.add_argument("--edge-method", choices=("sobel", "canny"), default="sobel",
                   help="prepare: edge map kind (default sobel; see data/edges.py)")


def _bench_args(p: argparse.ArgumentParser) -> None:
    """Defaults live in ``robustsr_bench.bench.BenchOptions``; the help repeats them."""
    p.add_argument("--methods", help="comma-separated methods (default esrgan,rsr,and,bapd; "
                   "esrgan, the reference, is always timed)")
    p.add_argument("--sizes", help="generator sizes: paper (64 ch x 23 blocks on small patches), "
                   "paper-real (the papers' LR 32 px, batch 16: minutes on a CPU) and/or smoke "
                   "(default paper,smoke)")
    p.add_argument("--repeats", type=int, help="timed interleaved rounds (default 5)")
    p.add_argument("--warmup", type=int, help="untimed rounds first (default 1)")
    p.add_argument("--patch", type=int, help="paper size: LR patch px (default 16)")
    p.add_argument("--batch", type=int, help="paper size: batch (default 2)")
    p.add_argument("--device", help="cpu, cuda, ... (default: auto)")
    p.add_argument("--infer-lr", type=int, help="LR side for inference MP/s (default 96)")
    p.add_argument("--infer-tile", type=int, help="tile side for tiled MP/s (default 48)")
    p.add_argument("--loader-batches", type=int, help="batches timed per loader (default 20)")
    p.add_argument("--dataset", help="also time this registered dataset's loader")
    p.add_argument("--data-root", help=DATA_ROOT_HELP)
    _set_arg(p, "override a field of every config, e.g. --set runtime.channels_last=true")
    p.add_argument("--large", type=int, metavar="LR_SIDE", help="only tiled x4 inference of one "
                   "LR_SIDE^2 image by the paper-size generator (time, MP/s, peak memory)")
    p.add_argument("--tile", type=int, help="with --large: tile side (default eval.tile_size)")
    p.add_argument("--zoo", action="store_true", help="only inference MP/s of every model-zoo "
                   "architecture with random weights (LR side --infer-lr, here default 64; "
                   "--repeats, here default 3) -> <out>/bench_zoo.json")
    p.add_argument("--out", default="results", help="output folder (default: results)")
    p.add_argument("--peer", action="store_true", default=None, help="also time the clean "
                   "ESRGAN step against BasicSR's published step (GAN sizes), interleaved")
    p.add_argument("--force", action="store_true", help="write into results/ even when the "
                   "machine was busy (load average above the core count) during the bench")


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CHECKPOINT_OR_ZOO_NAME",
                   help="a .pth/.safetensors file (any architecture spandrel detects, or a run's "
                        "models/net_g_N.pth) or a model-zoo name (see `list zoo`)")
    p.add_argument("--name", help="row label in tables (default: the zoo name or file stem)")
    p.add_argument("--suites", help="comma-separated suites (default: the profile's protocol; "
                   "= --set eval.suites=[...])")
    p.add_argument("--profile", default="smoke", help="whose suites and metrics: smoke or paper")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: auto)")
    _set_arg(p, "override an eval field, e.g. --set eval.images=DIV2K:valid (repeatable)")
    p.add_argument("--data-root", help=DATA_ROOT_HELP)
    p.add_argument("--workdir", help=WORKDIR_HELP)
    p.add_argument("--force", action="store_true", help="redo it even if this file was scored")


def _calibrate_args(p: argparse.ArgumentParser) -> None:
    """Defaults live in ``robustsr_bench.calibrate.CalibrationOptions``; the help repeats them."""
    p.add_argument("method", choices=("and",), help="the method whose budget is calibrated")
    p.add_argument("--radii", help="comma-separated PGD radii (default "
                   "0.003,0.01,0.015,0.02,0.03,0.04,0.1,1,1.5,2,20)")
    p.add_argument("--profiles", help="comma-separated profiles (default smoke,paper)")
    p.add_argument("--crops", type=int, help="HR crops of the training photos (default 8)")
    p.add_argument("--patch", type=int, help="HR crop side in px (default 64)")
    p.add_argument("--seed", type=int, help="crop and attack seed (default 0)")
    p.add_argument("--no-units", dest="units", action="store_false",
                   help="skip the table of norm parameterisations at the paper's radius 20")
    p.add_argument("--out", default="results/calibration_and.md",
                   help="markdown file to write (default results/calibration_and.md)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robustsr_bench", description=(
        "Benchmark and ablation harness for robust real-world super-resolution."))
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train and evaluate one method/ablation; prints its table")
    _run_args(run)
    lst = sub.add_parser("list", help="list methods, ablations, profiles, suites or metrics")
    lst.add_argument("kind", choices=LIST_KINDS)
    lst.add_argument("--method", help="with `ablations`: only this method")
    lst.add_argument("--verbose", "-v", action="store_true",
                     help="with `datasets`: each dataset's expected folder layout")
    _report_args(sub.add_parser("report", help="tables, plots and visual comparisons from the "
                                "run records (into results/)"))
    wts = sub.add_parser("weights", help="check or fetch the pretrained files (offline cache)")
    wts.add_argument("action", choices=("check", "fetch"))
    wts.add_argument("names", nargs="*", help="weight files and/or metric names (default: all)")
    wts.add_argument("--from", dest="source", metavar="DIR",
                     help="fetch: copy from DIR (flat, or laid out like $TORCH_HOME) instead of "
                          "downloading")
    wts.add_argument("--force", action="store_true", help="fetch: replace files already present")
    _data_args(sub.add_parser("data", help="prepare (sub-images, edge maps, meta_info) or "
                              "verify a registered dataset"))
    _sweep_args(sub.add_parser("sweep", help="launch a sweep file's runs "
                                f"({', '.join(LAUNCHERS)})"))
    _status_args(sub.add_parser("status", help="per run of a sweep: pending/running/done/failed"))
    _evaluate_args(sub.add_parser("evaluate", help="score a published or saved checkpoint "
                                  "(spandrel) on the profile's suites; a run record for report"))
    _bench_args(sub.add_parser("bench", help="time every method's training step relative to "
                               "clean ESRGAN, memory, inference MP/s, loader images/s"))
    _calibrate_args(sub.add_parser("calibrate", help="AND: attacked-LR PSNR per PGD radius next "
                                   "to the eval suites' LR PSNR (into results/)"))
    for command in sub.choices.values():
        command.add_argument("--configs", action="append", default=[], metavar="DIR",
                             help="a folder with your own suites/, sweeps/, methods/, "
                                  "families/ *.yaml, searched before the built-in configs "
                                  "(repeatable; also $ROBUSTSR_CONFIGS, os.pathsep-separated)")
    return parser


def _use_configs(folders: Sequence[str]) -> None:
    """Put ``--configs`` folders in front of ``$ROBUSTSR_CONFIGS``, where the registry (and any
    job a launcher starts) looks for user configs."""
    import os
    from pathlib import Path

    from .registry import CONFIGS_ENV

    for folder in folders:
        if not Path(folder).expanduser().is_dir():
            raise UserError(f"--configs {folder}: not a folder; expected a folder holding "
                            f"suites/, sweeps/, methods/ or families/")
    current = [p for p in os.environ.get(CONFIGS_ENV, "").split(os.pathsep) if p]
    absolute = [str(Path(f).expanduser().resolve()) for f in folders]
    if absolute:
        os.environ[CONFIGS_ENV] = os.pathsep.join(absolute + current)


def _overrides(args: argparse.Namespace) -> dict:
    from .config import parse_overrides

    overrides = parse_overrides(args.overrides)
    if args.init:
        overrides["train.init"] = args.init
    if args.device:
        overrides["runtime.device"] = args.device
    if args.data:
        overrides["data.train"] = args.data
    if args.data_root:
        overrides["data.root"] = args.data_root
    if getattr(args, "world_size", None) is not None:
        overrides["runtime.world_size"] = args.world_size
    return overrides


def cmd_run(args: argparse.Namespace) -> int:
    from . import registry, results
    from .config import check_device_name

    root = results.workdir(args.workdir)
    results.check_workdir(root)  # before the heavy imports: a typo answers at once
    if args.device:
        check_device_name(args.device)
    overrides = _overrides(args)
    registry.precheck_config(args.method, args.profile, args.ablation, args.seed, overrides)
    from .runview import parse_seeds, run_and_show

    seeds = parse_seeds(args.seeds, args.seed)
    return run_and_show(args.method, args.profile, args.ablation, seeds, overrides, root,
                        args.force)


def cmd_list(args: argparse.Namespace) -> int:
    from .listing import render

    print(render(args.kind, args.method, args.verbose))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .report import check_report, options_from_cli, write_report
    from .results import workdir

    root, out = workdir(args.workdir), Path(args.out)
    options = options_from_cli(args.sweep, args.methods, args.profile, args.metrics,
                               args.include_stale, args.crop, args.suites)
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


_SLURM_FLAGS = ("partition", "account", "qos", "constraint", "gpus_per_node", "tasks_per_node",
                "cpus_per_task", "mem_gb", "time_min", "array_parallelism", "signal_delay_s",
                "extra", "setup")


def cmd_sweep(args: argparse.Namespace) -> int:
    from .config import parse_overrides
    from .launch import sweep_command
    from .results import workdir

    overrides = parse_overrides(args.overrides)
    if args.data_root:
        overrides["data.root"] = args.data_root
    return sweep_command(args.sweep, args.launcher, workdir(args.workdir), overrides, args.profile,
                         {k: getattr(args, k) for k in _SLURM_FLAGS}, args.parallel,
                         args.dry_run, args.wait)


def cmd_status(args: argparse.Namespace) -> int:
    from .launch import status_command
    from .results import workdir

    return status_command(args.sweep, workdir(args.workdir), args.wait)


def cmd_data(args: argparse.Namespace) -> int:
    """``verify`` exits 1 when it found problems (all printed), like ``weights check``."""
    from .data.prepare import data_command

    return data_command(args.action, args.name, args.data_root or "", args.scale, args.split,
                        args.workers, {"crop": args.crop, "step": args.step,
                                       "thresh": args.thresh, "edges": args.edges,
                                       "edge_method": args.edge_method})


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .config import parse_overrides
    from .pretrained import evaluate_command
    from .results import workdir
    from .runview import Column, render
    from .tables import record_method

    overrides = parse_overrides(args.overrides)
    for key, value in (("runtime.device", args.device), ("data.root", args.data_root)):
        if value:
            overrides[key] = value
    if args.suites:
        overrides["eval.suites"] = [s.strip() for s in args.suites.split(",") if s.strip()]
    cfg, reference, run = evaluate_command(args.checkpoint, workdir(args.workdir), args.profile,
                                           args.name, overrides, args.force)
    print(f"\nrun {run.run_id} -> {run.path}\n")
    columns = [Column("bicubic", [reference]), Column(record_method(run.read_summary()), [run])]
    print(render(columns, [*cfg.eval.metrics, *cfg.eval.optional_metrics], cfg.eval.suites))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .bench import bench_command
    from .config import parse_overrides

    return bench_command(vars(args), parse_overrides(args.overrides), Path(args.out))


def cmd_calibrate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .calibrate import calibrate_command

    return calibrate_command(args.method, {k: getattr(args, k) for k in (
        "radii", "profiles", "crops", "patch", "seed", "units")}, Path(args.out))


COMMANDS = {"run": cmd_run, "list": cmd_list, "report": cmd_report, "weights": cmd_weights,
            "sweep": cmd_sweep, "status": cmd_status, "data": cmd_data, "bench": cmd_bench,
            "evaluate": cmd_evaluate, "calibrate": cmd_calibrate}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        _use_configs(args.configs)
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # `... | head`: the reader left; not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume from the last checkpoint",
              file=sys.stderr)
        return 130

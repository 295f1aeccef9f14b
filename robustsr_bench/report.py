"""Reports from run records: tables (md/LaTeX/CSV), figures, grids and ``results/``.

One job per module, in the order data flows:

- ``report_records``: run records -> one tidy frame (stale, broken, superseded ones listed)
- ``report_tables``: paper-style tables of seed-aggregated cells, best two (or significance) marked
- ``report_builder``: which tables and figures one ``report`` call shows (:class:`ReportOptions`)
- ``report_render``: a table as markdown, LaTeX and CSV
- ``report_readme``: ``results/README.md``
- here: writing all of it into ``out``, ``--check``, and the command's options

The names below are also importable from here (the old single-module home).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from . import registry
from .errors import ConfigError, NothingToReport
from .files import atomic_write_text
# metric_label moved to metric_specs.py (re-exported here for callers of the old location)
from .metric_specs import metric_label
from .records import copy_records
from .report_builder import Report, ReportBuilder, ReportOptions, default_metrics, severity
from .report_readme import REGENERATE, readme
from .report_records import (Records, Skipped, aggregate, load_records, select, sweep_keys,
                             sweep_runs)
from .report_render import to_csv, to_latex, to_markdown
from .report_tables import NOTES, Table, build_table
from .sr_c import report_section
from .tables import AVERAGE

__all__ = ["AVERAGE", "NOTES", "REGENERATE", "Records", "Report", "ReportBuilder",
           "ReportOptions", "Skipped", "Table", "aggregate", "build_table", "check_report",
           "default_metrics", "load_records", "metric_label", "options_from_cli", "readme",
           "select", "severity", "sweep_keys", "sweep_runs", "to_csv", "to_latex", "to_markdown",
           "write_report"]

log = logging.getLogger("robustsr_bench")


def write_report(root: Path, out: Path, options: ReportOptions, draw: bool = True,
                 records_dir: Path | None = None) -> list[Path]:
    """Write tables (md/tex/csv), figures, grids, ``records.csv`` and ``README.md`` into ``out``.

    Reads the workdir's runs and the committed records in ``records_dir`` (default
    ``<out>/records``), and copies the record files (:data:`RECORD_FILES`) of every shown workdir
    run into ``<out>/records/<run_id>/``, so what is written is a function of ``<out>/records``
    alone: a clone checks it with no workdir. Problems with workdir runs are logged; the README
    lists only those of committed records (it must not depend on one machine's workdir).
    Returns the text files written (what ``--check`` compares). Temp files a killed report left
    behind (``.<name>.*.tmp``, see ``results.atomic_path``) are removed first, so they never end
    up committed with the results.
    When no finished record matches the filters nothing is written and :class:`NothingToReport`
    names the folders searched: an empty or wrong ``--workdir`` must never replace a committed
    report with an empty one. Otherwise only the files the report regenerates are replaced,
    each atomically.
    """
    records_dir = Path(out) / "records" if records_dir is None else Path(records_dir)
    records = load_records(Path(root), options.include_stale, [records_dir])
    if select(records.frame, options.sweep, options.methods, options.profile).empty:
        skipped = f"; {len(records.skipped)} not shown (unfinished, failed or stale)" \
            if records.skipped else ""
        raise NothingToReport(f"no finished run record under {Path(root) / 'runs'} or "
                              f"{records_dir} matches "
                              f"profile={options.profile}"
                              f"{' sweep=' + options.sweep if options.sweep else ''}"
                              f"{' method=' + ','.join(options.methods) if options.methods else ''}"
                              f"{skipped}; {out} left unchanged (--workdir DIR: where the runs "
                              f"are)")
    for stray in Path(out).rglob(".*.tmp"):
        stray.unlink(missing_ok=True)
    report = ReportBuilder(records, options, Path(root), Path(out), draw).build()
    copy_records(report.shown, Path(out) / "records")
    report.skipped = [Skipped(f"records/{Path(s.path).name}", s.reason) for s in report.skipped
                      if Path(s.path).parent == records_dir]
    written: list[Path] = []
    sections = {}
    for table in report.tables:
        renders = ((to_markdown(table), to_latex(table), to_csv(table))
                   if isinstance(table, Table) else (table.markdown(), table.latex(), table.csv()))
        sections[table.name] = renders[0]
        for suffix, text in zip((".md", ".tex", ".csv"), renders):
            written.append(_write(Path(out) / "tables" / f"{table.name}{suffix}", text))
    written.append(_write(Path(out) / "records.csv", report.shown.drop(columns="path").to_csv(
        index=False, lineterminator="\n")))
    sr_c_text, sr_c_files = report_section(report.shown, Path(out), draw)
    written += sr_c_files
    written.append(_write(Path(out) / "README.md", readme(report, sections) + sr_c_text))
    return written


def _write(path: Path, text: str) -> Path:
    """Atomic, so a report killed mid-way leaves every file either old or new, never torn."""
    atomic_write_text(path, text)
    return path


TEXT_SUFFIXES = (".md", ".csv", ".tex")
# written by `bench`, `calibrate` and scripts/bench_job_startup.py, not by report
OTHER_OUTPUTS = ("bench.md", "calibration_and.md", "bench_startup.md")


def check_report(root: Path, out: Path, options: ReportOptions) -> list[str]:
    """Text outputs that differ between ``out`` and what the records produce now (sorted)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        try:
            write_report(root, fresh, options, draw=False, records_dir=Path(out) / "records")
        except NothingToReport as exc:  # name the folder the user gave, not the temp one
            raise NothingToReport(str(exc).replace(str(fresh), str(out))) from None
        names = {p.relative_to(fresh).as_posix() for p in fresh.rglob("*")
                 if p.suffix in TEXT_SUFFIXES}
        names |= {p.relative_to(out).as_posix() for p in Path(out).rglob("*")
                  if p.suffix in TEXT_SUFFIXES} - set(OTHER_OUTPUTS)
        names = {n for n in names if not n.startswith("records/")}  # inputs, not outputs
        return sorted(n for n in names if _read(fresh / n) != _read(Path(out) / n))


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def options_from_cli(sweep: str | None, methods: Sequence[str], profile: str,
                     metrics: str | None, include_stale: bool, crop: str,
                     suites: str | None = None) -> ReportOptions:
    """Parse the ``report`` command's text arguments, with one-line errors."""
    try:
        size, cx, cy = (float(x) for x in crop.split(","))
    except ValueError:
        raise ConfigError(f"--crop {crop!r} is invalid; expected SIZE,CX,CY, e.g. 96,0.5,0.4") \
            from None
    if size < 8 or not (0 <= cx <= 1 and 0 <= cy <= 1):
        raise ConfigError(f"--crop {crop!r} is invalid; expected size >= 8 and centre in [0, 1]")
    if sweep:
        sweep_keys(sweep)  # unknown sweep names fail here, before anything is written
    names = tuple(m.strip() for m in (metrics or "").split(",") if m.strip())
    columns = tuple(x.strip() for x in (suites or "").split(",") if x.strip())
    if columns:
        for suite in columns:
            registry.suite(suite)  # one line naming the unknown suite and the valid ones
    return ReportOptions(sweep, tuple(methods), profile, names, include_stale,
                         (int(size), cx, cy), columns)

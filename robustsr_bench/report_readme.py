"""``results/README.md``: the regenerate command, every table, every figure, what was left out."""

from __future__ import annotations

from .report_builder import Report

REGENERATE = "python -m robustsr_bench report --workdir work --out results"


def readme(report: Report, sections: dict[str, str]) -> str:
    """``results/README.md``: the command, every table, every figure, and what was left out."""
    lines = [f"# Reference results ({report.profile} profile)", "",
             (f"Generated from {report.runs} run records by `python -m robustsr_bench report`; "
              "do not edit by hand. Regenerate all of it with"), "", f"    {REGENERATE}", "",
             ("and check that the committed files match the records with `--check` added. "
              "Tables are also in `tables/` as LaTeX (booktabs) and CSV; figures in `figures/` "
              "as PNG and PDF."), ""]
    for table in report.tables:
        lines += [f"## {table.name.replace('_', ' ')}", "", sections[table.name]]
    if report.eval_sets:
        lines += ["## Evaluated on", "", "| suite | images scored |", "|---|---|"]
        lines += [f"| {suite} | {text} |" for suite, text in report.eval_sets.items()]
        lines.append("")
    if report.figures:
        lines += ["## Figures", ""]
        lines += [f"![{caption}]({path.as_posix()})\n\n*{caption}*\n" for caption, path in
                  report.figures]
    if report.skipped:
        lines += ["## Records not shown", ""]
        lines += [f"- `{s.path}`: {s.reason}" for s in report.skipped]
        lines.append("")
    return "\n".join(lines)


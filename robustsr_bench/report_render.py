"""A report table (:class:`report_tables.Table`) as GitHub markdown, LaTeX (booktabs) and CSV."""

from __future__ import annotations

import math

import pandas as pd
from tabulate import tabulate

from .metric_specs import metric_label
from .report_tables import NOTES, Table
from .tables import _tex, format_cell, higher_is_better
from .verdicts import BOLD_RULE


def _arrow(metric: str, up: str, down: str) -> str:
    direction = higher_is_better(metric)
    return "" if direction is None else (up if direction else down)


def to_markdown(table: Table) -> str:
    headers = table.label_headers + [f"{g} {metric_label(m)}{_arrow(m, '↑', '↓')}"
                                     for g in table.groups for m in table.metrics]
    body = []
    for labels, row in zip(table.labels, table.cells):
        texts = []
        for i, cell in enumerate(row):
            text = format_cell(cell, table.metrics[i % len(table.metrics)])
            text = (f"**{text}**" if cell.rank == 1 else f"<u>{text}</u>" if cell.rank == 2
                    else text)
            texts.append(text if cell.mean is not None else f"–<sup>{cell.note}</sup>")
        body.append(labels + texts)
    lines = [f"**{table.caption}**", "", tabulate(body, headers=headers, tablefmt="github",
                                                  disable_numparse=True), ""]
    if table.paired:

        lines.append(f"Mean over seeds and images; ± is the sample std over seeds (where a row "
                     f"has several seeds that differ). {BOLD_RULE}; ↑ higher is better, ↓ lower "
                     f"is better.")
    else:
        lines.append("Mean over seeds (± sample std where n > 1). Best in **bold**, second best "
                     "<u>underlined</u>; ↑ higher is better, ↓ lower is better.")
    lines += [f"<sup>{k}</sup> {v}." for k, v in table.notes().items()]
    return "\n".join(lines) + "\n"


def to_latex(table: Table) -> str:
    """booktabs table: grouped header with cmidrules; needs booktabs and amssymb."""
    nl, nm = len(table.label_headers), len(table.metrics)
    spec = "l" * nl + "c" * (len(table.groups) * nm)
    top = [_tex(h) for h in table.label_headers]
    rules = []
    for i, group in enumerate(table.groups):
        start = nl + i * nm + 1
        top.append(rf"\multicolumn{{{nm}}}{{c}}{{{_tex(group)}}}" if nm > 1 else _tex(group))
        rules.append(rf"\cmidrule(lr){{{start}-{start + nm - 1}}}")
    sub = [""] * nl + [_tex(metric_label(m)) + _arrow(m, r"$\uparrow$", r"$\downarrow$")
                       for _ in table.groups for m in table.metrics]
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{_tex(table.caption)}}}",
             rf"\label{{tab:{table.name}}}", r"\resizebox{\linewidth}{!}{%",
             rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(top) + r" \\",
             "".join(rules), " & ".join(sub) + r" \\", r"\midrule"]
    for labels, row in zip(table.labels, table.cells):
        texts = [_tex(x) for x in labels]
        for i, cell in enumerate(row):
            text = _tex(format_cell(cell, table.metrics[i % nm]))
            text = (rf"\textbf{{{text}}}" if cell.rank == 1 else rf"\underline{{{text}}}"
                    if cell.rank == 2 else text)
            texts.append(text if cell.mean is not None else rf"--$^{{{cell.note}}}$")
        lines.append(" & ".join(texts) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}"]
    notes = [rf"$^{{{k}}}$ {_tex(v)}." for k, v in table.notes().items()]
    if notes:
        lines.append(r"\par\footnotesize " + " ".join(notes))
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """Long form: one line per cell with mean, std, n, rank and the footnote key."""
    rows = []
    for labels, row in zip(table.labels, table.cells):
        for i, cell in enumerate(row):
            rows.append({**dict(zip(table.label_headers, labels)),
                         "group": table.groups[i // len(table.metrics)],
                         "metric": table.metrics[i % len(table.metrics)],
                         "mean": _round(cell.mean), "std": _round(cell.std), "n": cell.n,
                         "rank": cell.rank, "note": NOTES.get(cell.note, "")})
    return pd.DataFrame(rows).to_csv(index=False, lineterminator="\n")


def _round(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 6)


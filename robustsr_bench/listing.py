"""What ``list`` prints: every registered name with its one-line meaning."""

from __future__ import annotations

from tabulate import tabulate

from . import registry
from .data.layouts import DATA_ENV, LAYOUTS
from .metric_specs import SPECS


def _methods() -> list[tuple[str, str]]:
    return [(n, registry.method_spec(n).description) for n in registry.method_names()]


def _ablations(method: str | None) -> list[tuple[str, str]]:
    names = [method] if method else registry.method_names()
    rows = []
    for name in names:
        spec = registry.method_spec(name)
        rows += [(f"{name}:{a.name}", a.help) for a in spec.ablations.values()]
    return rows


def _named(folder: str) -> list[tuple[str, str]]:
    load = registry.profile if folder == "profiles" else registry.suite
    return [(n, str(load(n).get("description", ""))) for n in registry.names_in(folder)]


def _metrics() -> list[tuple[str, str]]:
    rows = []
    for name, m in SPECS.items():
        direction = "higher is better" if m.higher_is_better else "lower is better"
        ref = "needs reference" if m.needs_reference else "no reference"
        rows.append((name, f"{direction}; {ref}"))
    return rows


def _datasets(verbose: bool) -> str:
    """One line per registered dataset; ``verbose`` adds its folder tree under the data root."""
    rows = [(spec.name, ",".join(spec.splits), ",".join(map(str, spec.scales)) or "any",
             "yes" if spec.has_reference else "no", spec.description)
            for spec in LAYOUTS.values()]
    table = tabulate(rows, headers=["dataset", "splits", "scales", "HR", "description"],
                     tablefmt="plain")
    if not verbose:
        return table
    trees = [f"{spec.name}:\n" + "\n".join(f"  <root>/{line}" for line in spec.tree.splitlines())
             for spec in LAYOUTS.values()]
    return "\n\n".join([table, f"<root> is --data-root or ${DATA_ENV}; `data prepare NAME` "
                         f"writes NAME_sub/ (BAPD layout), usable as a dataset name", *trees])


def _zoo() -> str:
    """The model zoo (``configs/zoo.yaml``) and whether each file is in the weights cache."""
    from .weights import zoo_files
    from .zoo import load_zoo

    cached = {name: w.path.is_file() for name, w in zoo_files().items()}
    rows = [(e.name, e.architecture, f"x{e.scale}", e.licence, "yes" if cached[e.name] else "no",
             "yes" if e.sha256 else "no (recorded per run)", e.paper)
            for e in load_zoo().values()]
    return tabulate(rows, headers=["name", "architecture", "scale", "licence", "cached",
                                   "published sha256", "paper"], tablefmt="plain")


def render(kind: str, method: str | None = None, verbose: bool = False) -> str:
    if kind == "datasets":
        return _datasets(verbose)
    if kind == "zoo":
        return _zoo()
    rows = {"methods": _methods, "profiles": lambda: _named("profiles"),
            "suites": lambda: _named("suites"), "metrics": _metrics,
            "ablations": lambda: _ablations(method)}[kind]()
    return tabulate(rows, headers=[kind[:-1], "description"], tablefmt="plain")

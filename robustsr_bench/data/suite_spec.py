"""A suite as the data layer receives it: the registry reads the YAML (or expands a family
file) and hands over a :class:`SuiteSpec`, so the data layer never looks names up itself.

Torch-free and below the registry in the layer contract (pyproject.toml).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class SuiteSpec:
    """One evaluation suite. ``fields`` is its YAML mapping as written (what the suite cache's
    key hashes, so a changed field regenerates it); ``source`` names the file that defines it,
    for messages."""

    name: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def dataset(self) -> str:
        """A registered dataset whose own pairs are the suite (``dataset:``), else ''."""
        return str(self.fields.get("dataset") or "")

    @property
    def split(self) -> str:
        return str(self.fields.get("split") or "")

    @property
    def lr_dir(self) -> str:
        """A folder of real LR photos without HR (a no-reference suite), else ''."""
        return str(self.fields.get("lr_dir") or "")

    @property
    def generated(self) -> bool:
        """Degraded here from HR images by ``ops`` (not a dataset's or a folder's own LR)."""
        return not (self.dataset or self.lr_dir)

    @property
    def seed(self) -> int:
        return int(self.fields.get("seed", 0))

    @property
    def description(self) -> str:
        return str(self.fields.get("description", ""))

    @property
    def where(self) -> str:
        """How messages name the suite: its file, else its name."""
        return self.source or f"suite '{self.name}'"

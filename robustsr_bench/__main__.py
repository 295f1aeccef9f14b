"""``python -m robustsr_bench``."""

from .cli import main

raise SystemExit(main())

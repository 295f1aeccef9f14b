"""robustsr-bench: a benchmark and ablation harness for robust real-world super-resolution.

The public API is deliberately small; import the submodules you need (``robustsr_bench.metrics``,
``robustsr_bench.config`` ...). Nothing heavy is imported here so that ``--help`` stays instant.
"""

__version__ = "0.1.0"

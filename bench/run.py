"""Benchmark launcher: `python bench/run.py [--out docs/benchmarks.md]`, as `smoothce bench`.

The benchmark itself lives in the package (``smoothce.cli._bench``) so that the installed
``smoothce bench`` command can run it too.
"""

import sys

from smoothce.cli._bench import main

if __name__ == "__main__":
    sys.exit(main())

"""``python -m smoothce.cli``: the same command line as the ``smoothce`` script."""

from . import main

if __name__ == "__main__":  # importing the module (documentation tools do) must not run it
    raise SystemExit(main())

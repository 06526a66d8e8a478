"""``python -m smoothce``: the same command line as the ``smoothce`` script."""

from .cli import main

raise SystemExit(main())

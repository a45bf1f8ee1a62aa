"""``python -m starcompute``: the command line (the testbed starts its processes so)."""

from starcompute.cli.main import main

raise SystemExit(main())

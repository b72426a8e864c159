"""python -m chronopipe.cli: the chronopipe command."""

from . import main

raise SystemExit(main())

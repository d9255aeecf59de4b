"""python -m lrp_ref: the lrp-ref command line."""

from .cli import main

raise SystemExit(main())

"""``python -m rankopt``."""

from rankopt.cli import main

raise SystemExit(main())

"""``python -m tests.fuzz``: see tests/fuzz/__init__.py and docs/testing.md."""
from .driver import main

raise SystemExit(main())

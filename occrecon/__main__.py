"""``python -m occrecon``: the command line (:mod:`occrecon.cli`)."""
import sys

from occrecon.cli import main

if __name__ == "__main__":
    sys.exit(main())

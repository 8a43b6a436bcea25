"""`python -m csm_nb ...`: the command line (csm_nb/apps/cli.py)."""

import sys

from .apps.cli import main

if __name__ == "__main__":
    sys.exit(main())

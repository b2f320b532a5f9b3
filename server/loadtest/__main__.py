"""`python -m server.loadtest`: the same command as `thisthat loadtest`."""

import sys

from server.loadtest.cli import main

if __name__ == "__main__":
    sys.exit(main())

"""`python -m server.cli`: the same command line as `thisthat`."""

import sys

from server.cli.commands import main

sys.exit(main())

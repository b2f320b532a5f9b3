"""Entry point of `python -m chaos`."""

from chaos.cli import main

raise SystemExit(main())

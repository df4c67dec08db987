"""`python -m bot …` — see `python -m bot --help`."""

from bot.cli import main

raise SystemExit(main())

"""`python -m bot` subcommands, one module each with `register(subparsers)`."""

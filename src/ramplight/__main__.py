"""`python -m ramplight` runs the CLI."""

from ramplight.cli.main import main

main()

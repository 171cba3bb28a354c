"""The `ramplight` command."""

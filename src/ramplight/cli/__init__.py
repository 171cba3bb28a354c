"""The `ramplight` command.

The console script imports this package and calls `main`, which only then imports the CLI
(Typer, Rich, the server, DuckDB, the analysis). A process the server spawns (its ingestion
workers) re-runs the console script's imports as `__mp_main__`; kept this light, a worker
starts with what it needs instead of the whole CLI (about 40 instead of 140 MB a worker, and
the first large batch after a start no longer waits seconds for those imports)."""


def main() -> None:
    from ramplight.cli.main import main as run

    run()

"""Instructions per flag evaluation, counted by valgrind's callgrind: repeatable on a busy machine.

    python benchmarks/instructions.py            # every case, 20,000 evaluations each
    python benchmarks/instructions.py --n 5000   # fewer (quicker; the figure hardly moves)

Each case runs twice under `valgrind --tool=callgrind`, both building the same N units, one
evaluating each of them and one not; the difference divided by N is what one evaluation costs,
start-up and set-up cancelled out. The
flags and units are those of `evaluation.py` (the simple flag of its first table; part `rules`'
2 rules x 3 clauses, by which rule matches). Timings on the shared machines here swing 2x with
other work; these counts do not.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

CASES = ("simple flag", "2×3, first rule matches", "2×3, second rule matches", "2×3, no rule matches")


def _config_and_units(case: str, n: int) -> tuple[Any, str, list[tuple[str, dict[str, Any]]]]:
    from evaluation import (
        FLAG_KEY,
        RULE_CASES,
        RULES_KEY,
        make_units,
        ramplight_flag,
        rule_attributes,
        rules_flag,
    )

    from ramplight.core.evaluate import CompiledConfig
    from ramplight.core.flags import SdkConfig, convert_flag, sdk_flag, stabilize

    doc, key = (ramplight_flag(), FLAG_KEY) if case == CASES[0] else (rules_flag(), RULES_KEY)
    entry = sdk_flag(stabilize(convert_flag(doc), None), "production")
    assert entry is not None
    config = CompiledConfig(SdkConfig(environment="production", flags={key: entry}))
    if case == CASES[0]:
        units = make_units(n, 1)
        return config, key, [(u, {"plan": p}) for u, p in zip(units.ids, units.plans, strict=True)]
    rng = random.Random(11)
    rule_case = RULE_CASES[CASES.index(case) - 1]
    return config, key, [(f"user_{i:06d}", rule_attributes(rule_case, i, rng)) for i in range(n)]


def run_case(case: str, n: int, evaluate_them: bool) -> None:
    """The measured program: set up `n` units, then evaluate each (or not)."""
    config, key, units = _config_and_units(case, n)
    evaluate = config.evaluate
    if evaluate_them:
        for unit, attributes in units:
            evaluate(key, unit, attributes)
    else:
        for _unit, _attributes in units:  # the same loop, without the call
            pass


def count(case: str, n: int, evaluate_them: bool) -> int:
    """Instructions callgrind counts for the whole program."""
    output = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--run",
            case,
            "--n",
            str(n),
            *(() if evaluate_them else ("--skip",)),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    found = re.search(r"Collected : (\d+)", output)
    if found is None:
        raise RuntimeError(f"callgrind printed no count:\n{output[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20_000, help="evaluations per case (default 20,000)")
    parser.add_argument("--run", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--skip", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    if args.run is not None:
        run_case(args.run, args.n, not args.skip)
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    table = Table(title=f"Instructions per evaluation (callgrind; {args.n:,} units evaluated minus not)")
    table.add_column("case")
    table.add_column("instructions", justify="right")
    for case in CASES:
        per = (count(case, args.n, True) - count(case, args.n, False)) / args.n
        table.add_row(case, f"{per:,.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()

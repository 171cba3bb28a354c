"""The regex dialect of `regex` clauses: checked once, evaluated in linear time.

Patterns run in RE2 (no backtracking, so no pattern can stall an application); the checks
below also keep them to the syntax RE2, Go, Rust and ECMAScript read alike and refuse the
shapes that blow up in a backtracking engine, so another SDK stays safe (spec/bucketing.md §4.2).
"""

from __future__ import annotations

import re
import re._constants as sre
import re._parser as sre_parse
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import re2

MAX_PATTERN_LENGTH = 256
"""Characters (code points) in one pattern."""
MAX_REPEAT = 100
"""Largest count in `{n}`, `{n,m}`."""
MAX_ATTRIBUTE_LENGTH = 1024
"""A string attribute longer than this (code points) never matches a `regex` clause."""

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is reported to the caller, not to stderr

_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT)
_UNSUPPORTED: dict[Any, str] = {
    sre.GROUPREF: "backreferences are not supported; match the text itself",
    sre.GROUPREF_EXISTS: "conditional groups are not supported; use two clauses or two rules",
    sre.ASSERT: "lookahead/lookbehind is not supported; use a second clause with negate",
    sre.ASSERT_NOT: "negative lookahead/lookbehind is not supported; use a second clause with negate",
    sre.ATOMIC_GROUP: "atomic groups are not supported; drop the `(?>…)`",
    sre.POSSESSIVE_REPEAT: "possessive quantifiers are not supported; drop the extra `+`",
}


def _has_repeat(items: Any) -> bool:
    for op, arg in items:
        if op in _REPEATS or op == sre.POSSESSIVE_REPEAT:
            return True
        if op == sre.SUBPATTERN and _has_repeat(arg[3]):
            return True
        if op == sre.BRANCH and any(_has_repeat(branch) for branch in arg[1]):
            return True
    return False


def _walk(items: Any) -> str | None:
    for op, arg in items:
        if op in _UNSUPPORTED:
            return _UNSUPPORTED[op]
        if op == sre.SUBPATTERN:
            _group, add_flags, del_flags, body = arg
            if add_flags or del_flags:
                return "scoped flags `(?i:…)` are not supported; put `(?i)` at the start of the pattern"
            problem = _walk(body)
        elif op == sre.BRANCH:
            problem = next((p for b in arg[1] if (p := _walk(b)) is not None), None)
        elif op in _REPEATS:
            low, high, body = arg
            if low > MAX_REPEAT or (high != sre.MAXREPEAT and high > MAX_REPEAT):
                return f"a repeat count above {MAX_REPEAT} is not supported; use `+` or `*`"
            if (high == sre.MAXREPEAT or high > 1) and _has_repeat(body):
                return (
                    "nested quantifiers (a repeated group containing `*`, `+`, `?` or `{…}`, "
                    "as in `(a+)+`) can take exponential time; quantify single characters or "
                    "classes instead (`^(a+)+$` → `^a+$`)"
                )
            problem = _walk(body)
        else:
            problem = None
        if problem is not None:
            return problem
    return None


def pattern_problem(pattern: str) -> str | None:
    """Why `pattern` is outside the dialect (with a suggestion), or None when it is accepted."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"a pattern is at most {MAX_PATTERN_LENGTH} characters, this one has {len(pattern)}"
    try:
        parsed = sre_parse.parse(pattern)
    except re.error as exc:
        return f"not a valid regex: {exc}"
    if parsed.state.flags & ~(sre.SRE_FLAG_UNICODE | sre.SRE_FLAG_IGNORECASE):
        return "only the `(?i)` flag is supported"
    problem = _walk(parsed.data)
    if problem is not None:
        return problem
    try:
        re2.compile(pattern, options=_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        return f"not supported by the regex dialect (RE2 syntax): {detail}"
    return None


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> Callable[[str], bool]:
    """A search (not full match) for `pattern`; raises ValueError when it is outside the dialect.
    One compiled pattern serves every clause that uses it (RE2 matches from several threads)."""
    problem = pattern_problem(pattern)
    if problem is not None:
        raise ValueError(problem)
    # RE2's own Match on the UTF-8 bytes: `search` would also map byte offsets back to
    # characters and build a match object (four times the cost), and only a yes/no is needed.
    match = re2.compile(pattern, options=_OPTIONS)._regexp.Match
    unanchored = re2._Anchor.UNANCHORED

    def matches(value: str) -> bool:
        if len(value) > MAX_ATTRIBUTE_LENGTH:
            return False
        encoded = value.encode()
        start: int = match(unanchored, encoded, 0, len(encoded))[0][0]
        return start != -1

    return matches

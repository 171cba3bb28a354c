"""SemVer 2.0.0 versions as precedence keys that compare with plain tuple comparison.

A key is `(major, minor, patch, 1, ())` for a release and `(major, minor, patch, 0, ids)` for a
pre-release, each identifier `(0, number)` or `(1, text)`: a pre-release sorts before its
release, numeric identifiers before alphanumeric ones, a shorter list of equal identifiers first
(semver.org §11), and build metadata is left out, so equal keys mean equal precedence.
"""

from __future__ import annotations

import re

VersionKey = tuple[int, int, int, int, tuple[tuple[int, int] | tuple[int, str], ...]]

_NUMBER = r"0|[1-9][0-9]*"
_PRE_ID = rf"(?:{_NUMBER}|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_BUILD_ID = r"[0-9A-Za-z-]+"
# semver.org's grammar, ASCII only; matched in full (no newline may trail the version).
_SEMVER = re.compile(
    rf"({_NUMBER})\.({_NUMBER})\.({_NUMBER})"
    rf"(?:-({_PRE_ID}(?:\.{_PRE_ID})*))?"
    rf"(?:\+{_BUILD_ID}(?:\.{_BUILD_ID})*)?"
).fullmatch

CACHE_SIZE = 4096
"""Distinct attribute strings whose parse is kept; applications send few distinct versions."""
_cache: dict[str, VersionKey | None] = {}


def parse_version(text: str) -> VersionKey | None:
    """The precedence key of `text` after removing one leading lowercase `v`; None if invalid."""
    match = _SEMVER(text[1:] if text[:1] == "v" else text)
    if match is None:
        return None
    major, minor, patch, pre = match.groups()
    if pre is None:
        return (int(major), int(minor), int(patch), 1, ())
    ids = tuple((0, int(i)) if i.isdigit() else (1, i) for i in pre.split("."))
    return (int(major), int(minor), int(patch), 0, ids)


def version_key(text: str) -> VersionKey | None:
    """`parse_version`, remembered for the last CACHE_SIZE distinct strings (safe across threads:
    a lost race only parses twice)."""
    try:
        return _cache[text]
    except KeyError:
        pass
    key = parse_version(text)
    if len(_cache) >= CACHE_SIZE:
        _cache.clear()  # bounded by forgetting; the versions in use come back at once
    _cache[text] = key
    return key

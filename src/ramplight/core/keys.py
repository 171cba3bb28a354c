"""API key hashing (pure)."""

from __future__ import annotations

import hashlib


def hash_key(plaintext: str) -> str:
    """Keys are 160-bit random tokens, so one SHA-256 suffices (no password stretching)."""
    return hashlib.sha256(plaintext.encode()).hexdigest()

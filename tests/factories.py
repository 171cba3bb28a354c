"""Small factories for tests: flag documents and a handle on a running server."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from ramplight.server.run import ServerThread
from ramplight.settings import Settings


def flag_doc(key: str = "support_assistant_profile", **overrides: Any) -> dict[str, Any]:
    """A JSON flag by conversation: control/candidate/fallback, 95/5 in production."""
    doc: dict[str, Any] = {
        "key": key,
        "type": "json",
        "assignment_unit": "conversation",
        "variations": [
            {"key": "control", "value": {"prompt_profile": "support_v3"}},
            {"key": "candidate", "value": {"prompt_profile": "support_v4"}},
            {"key": "fallback", "value": {"prompt_profile": "support_v3"}},
        ],
        "environments": {
            "production": {
                "default_variation": "control",
                "off_variation": "control",
                "rollout": {"weights": {"control": 95, "candidate": 5}},
            }
        },
    }
    doc.update(overrides)
    return doc


@dataclass
class RunningServer:
    settings: Settings
    thread: ServerThread
    admin_key: str
    admin: httpx.Client

    @property
    def url(self) -> str:
        return self.thread.url

    def sdk_key(self, environment: str = "production") -> str:
        response = self.admin.post(
            "/api/keys", json={"kind": "sdk", "name": "test", "environment": environment}
        )
        response.raise_for_status()
        key: str = response.json()["key"]
        return key

    def create_flag(self, **overrides: Any) -> dict[str, Any]:
        response = self.admin.post("/api/flags", json=flag_doc(**overrides))
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

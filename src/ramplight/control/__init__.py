"""Control-plane use cases shared by the HTTP server and the CLI, one module per concern:
environments, flags (and segments, SDK config, ingestion facts), files (`apply` of flags and
metrics as code) and keys. Each validates, computes the new state with `core` (pure rules and
arithmetic live there) and writes it with its `flag_changes` rows in one store transaction;
callers parse input and format output only. Authenticating requests is the server's
(`server/auth.py`)."""

from ramplight.control.common import Clock, utcnow
from ramplight.control.environments import create_environment, ensure_default_environments, ensure_environment
from ramplight.control.files import PlannedChange, apply, apply_metrics, plan_apply, save_metric
from ramplight.control.flags import (
    archive,
    create_flag,
    flag_facts,
    get_flag,
    kill,
    ramp,
    restore,
    save_segment,
    sdk_config,
    stored_problems,
    update_flag,
)
from ramplight.control.keys import create_api_key, revoke_api_key
from ramplight.control.sources import apply_sources, delete_source, save_source

__all__ = [
    "Clock",
    "PlannedChange",
    "apply",
    "apply_metrics",
    "apply_sources",
    "archive",
    "create_api_key",
    "create_environment",
    "create_flag",
    "delete_source",
    "ensure_default_environments",
    "ensure_environment",
    "flag_facts",
    "get_flag",
    "kill",
    "plan_apply",
    "ramp",
    "restore",
    "revoke_api_key",
    "save_metric",
    "save_segment",
    "save_source",
    "sdk_config",
    "stored_problems",
    "update_flag",
    "utcnow",
]

"""Rollout arithmetic (pure): moving weight between variations in whole bucketing slots."""

from __future__ import annotations

from collections.abc import Mapping

from ramplight.core.bucketing import SLOTS, percent_to_slots, slots_to_percent
from ramplight.core.errors import ValidationError


def ramp_weights(
    weights: Mapping[str, float], variation: str, percent: float, donor: str
) -> dict[str, float]:
    """New weights giving `variation` `percent`, the difference taken from (or given to) `donor`."""
    if not 0 <= percent <= 100:
        raise ValidationError.at("percent", f"{percent:g} is not within 0..100")
    slots = {k: percent_to_slots(v) for k, v in weights.items()}
    target = percent_to_slots(percent)
    delta = target - slots.get(variation, 0)
    if variation == donor:
        raise ValidationError.at("from", f"{variation!r} cannot give weight to itself")
    if slots.get(donor, 0) - delta < 0:
        raise ValidationError.at(
            "percent",
            f"{donor!r} has only {slots_to_percent(slots.get(donor, 0)):g} % to give; "
            f"choose another --from variation",
        )
    slots[variation] = target
    slots[donor] = slots.get(donor, 0) - delta
    assert sum(slots.values()) == SLOTS
    return {k: slots_to_percent(v) for k, v in slots.items()}

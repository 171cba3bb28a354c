"""The price table: what a model's tokens cost, configured as code (`prices:` in an applied file,
or `PUT /api/prices`), so a span's cost is known when its exporter does not send one.

A span's cost is `gen_ai.usage.cost` when the span carries it; otherwise its tokens priced by the
entry of its model — the exact model name, else the longest entry the name starts with
(`gpt-5-mini` prices `gpt-5-mini-2026-08-07`). Input tokens already include cache reads and
output tokens reasoning (the conventions say so): each count is priced once, at its own rate.
A span with tokens and neither a cost nor a price has no cost — never a silent zero — and the
readout counts such spans (`data_quality.spans.spans_unpriced`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import msgspec

from ramplight.core.errors import FieldProblem, ValidationError

PerMillion = Annotated[float, msgspec.Meta(ge=0, le=1_000_000)]


class Price(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """USD per million tokens of one model (or of every model whose name starts with `model`)."""

    model: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    input_per_million: PerMillion
    output_per_million: PerMillion


def convert_prices(docs: Sequence[Mapping[str, Any]]) -> list[Price]:
    """Every entry checked; one ValidationError naming each bad one (`prices[i].field`)."""
    prices: list[Price] = []
    problems: list[FieldProblem] = []
    seen: set[str] = set()
    for i, doc in enumerate(docs):
        try:
            price = msgspec.convert(doc, Price)
        except msgspec.ValidationError as exc:
            reason, _, path = str(exc).partition(" - at `")
            field = path.rstrip("`").removeprefix("$").lstrip(".")
            problems.append(FieldProblem(f"prices[{i}]" + (f".{field}" if field else ""), reason))
            continue
        if price.model in seen:
            problems.append(FieldProblem(f"prices[{i}].model", f"{price.model!r} appears twice"))
        seen.add(price.model)
        prices.append(price)
    if problems:
        summary = "; ".join(p.render() for p in problems[:5])
        raise ValidationError(f"invalid price table: {summary}", tuple(problems))
    return sorted(prices, key=lambda p: p.model)

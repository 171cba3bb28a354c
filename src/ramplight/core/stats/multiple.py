"""Multiple-comparison adjusted p-values: Holm-Bonferroni (FWER) and Benjamini-Hochberg (FDR)."""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ramplight.core.errors import ValidationError


def holm_bonferroni(p_values: Sequence[float]) -> tuple[float, ...]:
    """Holm step-down adjusted p-values, in the input order."""
    p = _checked(p_values)
    m = p.size
    order = np.argsort(p, kind="stable")
    # p̃_(i) = max_{j ≤ i} min(1, (m - j + 1)·p_(j)) (Holm 1979).
    stepped = np.maximum.accumulate(np.minimum((m - np.arange(m)) * p[order], 1.0))
    return _in_input_order(stepped, order)


def benjamini_hochberg(p_values: Sequence[float]) -> tuple[float, ...]:
    """Benjamini-Hochberg step-up adjusted p-values (q-values), in the input order."""
    p = _checked(p_values)
    m = p.size
    order = np.argsort(p, kind="stable")
    # p̃_(i) = min_{j ≥ i} min(1, m·p_(j)/j) (Benjamini & Hochberg 1995).
    scaled = np.minimum(p[order] * (m / np.arange(1, m + 1)), 1.0)
    stepped = np.minimum.accumulate(scaled[::-1])[::-1]
    return _in_input_order(stepped, order)


def _checked(p_values: Sequence[float]) -> npt.NDArray[np.float64]:
    p = np.asarray(p_values, dtype=np.float64).reshape(-1)
    if np.any(~((p >= 0) & (p <= 1))):
        raise ValidationError("p-values must lie in [0, 1]")
    return p


def _in_input_order(
    adjusted: npt.NDArray[np.float64],
    order: npt.NDArray[np.intp],
) -> tuple[float, ...]:
    out = np.empty_like(adjusted)
    out[order] = adjusted
    return tuple(float(x) for x in out)

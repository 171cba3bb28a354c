import inspect

import ramplight.core.stats as stats
from ramplight.core.stats import (
    bayes,
    cuped,
    drift,
    effects,
    multiple,
    noninferiority,
    power,
    quantile,
    sequential,
    srm,
    stratified,
    suffstats,
)

MODULES = (
    bayes,
    cuped,
    drift,
    effects,
    multiple,
    noninferiority,
    power,
    quantile,
    sequential,
    srm,
    stratified,
    suffstats,
)


def isort_style(name: str) -> tuple[int, str]:
    """Constants, then classes, then functions, each alphabetical (ruff RUF022's order)."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_all_is_alphabetised_and_every_name_resolves() -> None:
    assert stats.__all__ == sorted(stats.__all__, key=isort_style)
    for name in stats.__all__:
        assert hasattr(stats, name), name


def test_every_public_class_and_function_of_the_method_modules_is_exported() -> None:
    for module in MODULES:
        for name, member in vars(module).items():
            defined_here = getattr(member, "__module__", None) == module.__name__
            if name.startswith("_") or not defined_here:
                continue
            if inspect.isclass(member) or inspect.isfunction(member):
                assert name in stats.__all__, f"{module.__name__}.{name} is not exported"

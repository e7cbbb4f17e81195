"""The exception rule, walked over every public entry point: the wrong *kind* of argument is a TypeError.

xaicourse.inputs states the rule: TypeError when an argument is the wrong kind of thing (a list for a
tensor, a string for a model), ValueError when it is the right kind with a wrong value. Every public
function of the catalogued modules (tests/test_reliability.py) is called with an object of no
meaningful kind in each required argument; it must answer with a TypeError (its message naming what
was expected), never an AttributeError or RuntimeError from deep inside, and never succeed.
"""
import contextlib
import importlib
import inspect
import warnings

import pytest

from test_reliability import CATALOGUED_MODULES

# Functions that accept anything by design.
ACCEPT_ANYTHING = {
    "inputs.warn_if_zero": "inspects any result and warns; it never raises",
}


class Nothing:
    """An argument of no kind the package knows."""

    def __repr__(self):
        return "Nothing()"


def entry_points():
    for module_name in CATALOGUED_MODULES:
        module = importlib.import_module(f"xaicourse.{module_name}")
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isfunction(obj) and obj.__module__.startswith(module.__name__):
                params = inspect.signature(obj).parameters.values()
                required = [p for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
                if required and f"{module_name}.{name}" not in ACCEPT_ANYTHING:
                    yield f"{module_name}.{name}"


ENTRY_POINTS = sorted(entry_points())


def test_the_walk_covers_the_package():
    assert len(ENTRY_POINTS) > 150, f"only {len(ENTRY_POINTS)} entry points found"
    assert not set(ACCEPT_ANYTHING) - {f"{m}.{n}" for m in CATALOGUED_MODULES
                                        for n in importlib.import_module(f"xaicourse.{m}").__all__}


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_the_wrong_kind_of_argument_is_a_type_error(name):
    module_name, function_name = name.rsplit(".", 1)
    fn = getattr(importlib.import_module(f"xaicourse.{module_name}"), function_name)
    params = inspect.signature(fn).parameters.values()
    args = [Nothing() for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    kwargs = {p.name: Nothing() for p in params if p.default is p.empty and p.kind == p.KEYWORD_ONLY}
    with warnings.catch_warnings(), pytest.raises(TypeError) as excinfo:
        warnings.simplefilter("ignore")
        result = fn(*args, **kwargs)
        if isinstance(result, contextlib.AbstractContextManager):
            with result:
                pass
        elif inspect.isgenerator(result):
            list(result)
    assert "Nothing" in str(excinfo.value) or "must be" in str(excinfo.value) or "takes" in str(excinfo.value), \
        f"{name}: the TypeError does not say what was expected: {excinfo.value}"

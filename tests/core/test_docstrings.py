"""Docstrings must not drift from signatures: where a public core function documents its arguments
(an ``Args:`` section), the documented names are exactly its parameters."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import directanimator_core

ARG_LINE = re.compile(r"^\s{2,}(\*{0,2}\w+)\s*(\(.*?\))?\s*:")


def documented_args(doc: str) -> list[str] | None:
    lines = inspect.cleandoc(doc).splitlines()
    if "Args:" not in [line.strip() for line in lines]:
        return None
    start = [line.strip() for line in lines].index("Args:") + 1
    names = []
    for line in lines[start:]:
        if line.strip() and not line.startswith(" "):
            break  # next section
        if match := ARG_LINE.match(line):
            indent = len(line) - len(line.lstrip())
            if not names or indent <= names[-1][1]:
                names.append((match.group(1).lstrip("*"), indent))
    return [name for name, _ in names]


def public_functions():
    for info in pkgutil.walk_packages(directanimator_core.__path__, "directanimator_core."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj):
                yield f"{info.name}.{name}", obj
            elif inspect.isclass(obj):
                for method_name, method in vars(obj).items():
                    if inspect.isfunction(method) and (not method_name.startswith("_") or method_name == "__init__"):
                        yield f"{info.name}.{name}.{method_name}", method


def test_documented_arguments_match_signatures() -> None:
    drifted = {}
    for qualname, function in public_functions():
        documented = documented_args(function.__doc__ or "")
        if documented is None:
            continue
        actual = [p for p in inspect.signature(function).parameters if p not in ("self", "cls")]
        if documented != actual:
            drifted[qualname] = (documented, actual)
    assert drifted == {}


def test_the_check_can_fail() -> None:
    def sample(a: int, b: int) -> int:
        """Add.

        Args:
            a: first.
            c: a name that is not a parameter.
        """
        return a + b

    assert documented_args(sample.__doc__) == ["a", "c"]

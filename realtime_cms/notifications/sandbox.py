"""The notification template sandbox: Jinja2's immutable sandbox with a budget per rendering.

A rendering runs under a `Budget` (`budget()`): every loop iteration, call (macros and
`loop()` included) and filter is a step, and a rendering may take `MAX_STEPS` steps and
`RENDER_SECONDS` seconds, both checked at each step. Renderings run in a renderer process
(see `templates.py`) that is never stopped from outside: these checks, made inside the
template's own loops and calls, are what stop a rendering. So that no single step can run long
either, every value an operator, call or filter builds is bounded before it is built where
its size is known in advance (`*`, `**`, `+`, `~`, `%`, `str.format`, padding and
replacing), and checked after it is built otherwise: strings up to `MAX_CHARS` characters,
collections up to `MAX_ITEMS` items, integers up to `MAX_INT_BITS` bits. `range()` gives
at most `MAX_RANGE` numbers; `lipsum()` is not offered; recursive `for` loops are refused
when a template is parsed.
"""

from __future__ import annotations

import inspect
import operator as ops
import re
import string
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import wraps
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

MAX_STEPS = 100_000
RENDER_SECONDS = 1.0
MAX_RANGE = 1000
MAX_ITEMS = 100_000
MAX_CHARS = 1_000_000
MAX_INT_BITS = 4096
MAX_EXPONENT = 64
# Widths and precisions in format specifications (`{:>20}`, `%8.2f`).
MAX_FORMAT_WIDTH = 1000

_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")
_DIGITS = re.compile(r"\d+")


class OverBudget(SecurityError):
    """The rendering took more steps, or more time, than a rendering may."""


@dataclass(slots=True)
class Budget:
    """What is left to one rendering: steps, and time until `deadline` (monotonic seconds)."""

    steps: int
    deadline: float

    def step(self) -> None:
        self.steps -= 1
        if self.steps < 0:
            raise OverBudget(f"more than {MAX_STEPS} loop iterations, calls and filters")
        if time.monotonic() > self.deadline:
            raise OverBudget("the rendering ran out of time")


_BUDGET: ContextVar[Budget | None] = ContextVar("notification_template_budget", default=None)


@contextmanager
def budget(
    *, seconds: float = RENDER_SECONDS, steps: int = MAX_STEPS, deadline: float | None = None
) -> Iterator[Budget]:
    """Render inside this block: a fresh budget, ending by `deadline` at the latest."""
    ends = time.monotonic() + seconds
    current = Budget(steps, ends if deadline is None else min(ends, deadline))
    token = _BUDGET.set(current)
    try:
        yield current
    finally:
        _BUDGET.reset(token)


def _step() -> None:
    current = _BUDGET.get()
    if current is None:
        # Also what keeps Jinja from folding constant filters at compile time, unbounded.
        raise SecurityError("templates render only within a budget")
    current.step()


def bounded(value: Any) -> Any:
    """`value`, unless it is a string, collection or integer over the bounds (SecurityError)."""
    if isinstance(value, str | bytes):
        if len(value) > MAX_CHARS:
            raise SecurityError(f"a text of over {MAX_CHARS} characters")
    elif isinstance(value, list | tuple | dict | set | frozenset):
        if len(value) > MAX_ITEMS:
            raise SecurityError(f"a collection of over {MAX_ITEMS} items")
    elif isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise SecurityError(f"an integer of over {MAX_INT_BITS} bits")
    return value


def _planned(size: int) -> None:
    if size > MAX_CHARS:
        raise SecurityError(f"the result would be over {MAX_CHARS} characters or items")


def _check_width(number: str | None) -> None:
    if number == "*":
        raise SecurityError("'*' widths are refused in templates")
    if number is not None and int(number) > MAX_FORMAT_WIDTH:
        raise SecurityError(f"format widths above {MAX_FORMAT_WIDTH} are refused in templates")


def _check_printf(pattern: str) -> None:
    for match in _PRINTF.finditer(pattern):
        _check_width(match[1])
        _check_width(match[2])


def _check_format(pattern: str) -> None:
    for _, _, spec, _ in string.Formatter().parse(pattern):
        if spec and "{" in spec:
            raise SecurityError("nested format specifications are refused in templates")
        for digits in _DIGITS.findall(spec or ""):
            _check_width(digits)


def _replaced_size(text: str, old: str, new: str, count: int | None = None) -> int:
    times = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        times = min(times, count)
    return len(text) + times * (len(new) - len(old))


def _joined_size(separator: str, items: Any) -> int:
    if not isinstance(items, list | tuple):
        return 0  # checked once built
    texts = sum(len(item) for item in items if isinstance(item, str))
    return texts + len(separator) * max(0, len(items) - 1)


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


# Checks before a `str` method runs: (the string, its arguments) -> the size it would build.
_STR_METHODS: dict[str, Callable[[str, tuple[Any, ...]], int]] = {
    "center": lambda s, a: _int(a[0]) if a else 0,
    "ljust": lambda s, a: _int(a[0]) if a else 0,
    "rjust": lambda s, a: _int(a[0]) if a else 0,
    "zfill": lambda s, a: _int(a[0]) if a else 0,
    "expandtabs": lambda s, a: len(s) + s.count("\t") * (_int(a[0]) if a else 8),
    "replace": lambda s, a: _replaced_size(s, *a) if len(a) >= 2 else 0,
    "join": lambda s, a: _joined_size(s, a[0]) if a else 0,
}


def _check_str_method(method: Any, args: tuple[Any, ...]) -> None:
    if isinstance(method, types.BuiltinMethodType) and isinstance(method.__self__, str):
        size = _STR_METHODS.get(method.__name__)
        if size is not None:
            _planned(size(method.__self__, args))


def _filter_checks() -> dict[str, Callable[[Mapping[str, Any]], None]]:
    """Checks before a filter runs, on its bound arguments by parameter name."""

    def pad(a: Mapping[str, Any]) -> None:
        _planned(_int(a.get("width", 0)))

    def indent(a: Mapping[str, Any]) -> None:
        width = a.get("width", 4)
        step = len(width) if isinstance(width, str) else _int(width)
        _planned(len(str(a["s"])) + (str(a["s"]).count("\n") + 1) * step)

    def printf(a: Mapping[str, Any]) -> None:
        if isinstance(a["value"], str):
            _check_printf(a["value"])

    def replace(a: Mapping[str, Any]) -> None:
        text, old, new = (str(a[name]) for name in ("s", "old", "new"))
        _planned(_replaced_size(text, old, new, a.get("count")))

    def join(a: Mapping[str, Any]) -> None:
        _planned(_joined_size(str(a.get("d", "")), a["value"]))

    def wordwrap(a: Mapping[str, Any]) -> None:
        _planned(len(str(a["s"])) * (1 + len(str(a.get("wrapstring") or "\n"))))

    def count(name: str) -> Callable[[Mapping[str, Any]], None]:
        return lambda a: _planned(_int(a.get(name, 0)))

    def tojson(a: Mapping[str, Any]) -> None:
        indent = a.get("indent")
        if (len(indent) if isinstance(indent, str) else _int(indent)) > MAX_EXPONENT:
            raise SecurityError(f"tojson indents above {MAX_EXPONENT} are refused in templates")

    return {
        "center": pad,
        "indent": indent,
        "format": printf,
        "replace": replace,
        "join": join,
        "wordwrap": wordwrap,
        "batch": count("linecount"),
        "slice": count("slices"),
        "tojson": tojson,
    }


_FILTER_CHECKS = _filter_checks()


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    check = _FILTER_CHECKS.get(name)
    inner = inspect.unwrap(func)
    signature = inspect.signature(inner)
    # Jinja's async-capable filters take an evaluation context their sync body does not.
    extra = int(_passes_arg(func) and not _passes_arg(inner))

    @wraps(func)  # keeps `jinja_pass_arg`, so Jinja still passes the context or environment
    def run(*args: Any, **kwargs: Any) -> Any:
        _step()
        if check is not None:
            bound = signature.bind(*args[extra:], **kwargs)
            check({**bound.arguments, **bound.arguments.get("kwargs", {})})
        return bounded(func(*args, **kwargs))

    return run


def _passes_arg(func: Callable[..., Any]) -> bool:
    return getattr(func, "jinja_pass_arg", None) is not None


def _bounded_range(*args: int) -> range:
    values = range(*args)
    if len(values) > MAX_RANGE:
        raise SecurityError(f"range() is limited to {MAX_RANGE} items in templates")
    return values


class _Counted:
    """A `for` loop's iterable: each item taken is a step of the budget."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[Any]) -> None:
        self._items = items

    def __iter__(self) -> Iterator[Any]:
        for item in self._items:
            _step()
            yield item

    def __len__(self) -> int:
        return len(self._items)  # type: ignore[arg-type]  # TypeError tells Jinja to count


class _Budgeted(NodeTransformer):
    """Rewrites a parsed template so its loops and `~` joins go through the environment."""

    def visit_For(self, node: nodes.For) -> nodes.Node:  # noqa: N802
        if node.recursive:
            raise TemplateSyntaxError("recursive loops are not allowed", node.lineno)
        self.generic_visit(node)
        node.iter = _call("budget_iter", [node.iter], node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:  # noqa: N802
        self.generic_visit(node)
        return _call("budget_concat", node.nodes, node.lineno)


def _call(name: str, args: Sequence[nodes.Node], lineno: int) -> nodes.Call:
    return nodes.Call(nodes.EnvironmentAttribute(name), list(args), [], None, None, lineno=lineno)


_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "*": ops.mul,
    "**": ops.pow,
    "+": ops.add,
    "%": ops.mod,
}


class BudgetedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox with the budget and bounds of this module."""

    intercepted_binops = frozenset(_OPERATORS)

    def __init__(self) -> None:
        super().__init__(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True)
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}
        self.globals.pop("lipsum", None)
        self.globals["range"] = _bounded_range

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        _Budgeted().visit(tree)
        return tree

    def budget_iter(self, items: Iterable[Any]) -> _Counted:
        """What a `for` loop iterates over instead of `items` (see `_Budgeted`)."""
        return _Counted(items)

    def budget_concat(self, *parts: Any) -> str:
        """`a ~ b`, bounded before the text is built."""
        texts = [str(part) for part in parts]
        _planned(sum(map(len, texts)))
        return "".join(texts)

    def call(
        __self,  # noqa: N805  (Jinja's own spelling: keyword arguments may be named `self`)
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        _step()
        _check_str_method(__obj, args)
        return bounded(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        sandboxed = super().wrap_str_format(value)
        if sandboxed is None:
            return None
        _check_format(value.__self__)

        def run(*args: Any, **kwargs: Any) -> str:
            return str(bounded(sandboxed(*args, **kwargs)))

        return run

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            _check_power(left, right)
        elif operator == "*":
            _check_repeat(left, right)
        elif operator == "+" and isinstance(left, str | list | tuple):
            _planned(len(left) + (len(right) if isinstance(right, str | list | tuple) else 0))
        elif operator == "%" and isinstance(left, str):
            _check_printf(left)
        return bounded(_OPERATORS[operator](left, right))


def _check_power(base: Any, exponent: Any) -> None:
    if isinstance(exponent, int | float) and abs(exponent) > MAX_EXPONENT:
        raise SecurityError(f"exponents above {MAX_EXPONENT} are refused in templates")
    if isinstance(base, int) and isinstance(exponent, int):
        if base.bit_length() * max(exponent, 0) > MAX_INT_BITS:
            raise SecurityError(f"an integer of over {MAX_INT_BITS} bits")


def _check_repeat(left: Any, right: Any) -> None:
    for size, times in ((left, right), (right, left)):
        if isinstance(size, str | list | tuple) and isinstance(times, int):
            if len(size) * times > MAX_ITEMS:
                raise SecurityError("the repeated sequence would be too long")
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise SecurityError(f"an integer of over {MAX_INT_BITS} bits")

"""Rendering notification templates in a renderer process (see `templates.py`).

These functions run in a child process, so they take and return plain, picklable data: the
sources, the context and the recipients in; the texts, or a `Failure` with the problem code
and message, out. Each rendering runs in the budgeted sandbox of `sandbox.py`.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import Template
from jinja2.exceptions import SecurityError

from realtime_cms.notifications.sandbox import BudgetedEnvironment, OverBudget, budget

RECIPIENT = "recipient"
SUBJECT_MAX = 255
# What one renderer process may allocate: a backstop behind the sandbox's size bounds.
MEMORY_BYTES = 1 << 30
ENV = BudgetedEnvironment()

Texts = list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a rendering did not give texts: a problem `code` and a message for the caller."""

    code: str
    message: str


class _Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.failure = Failure(code, message)


def limit_memory() -> None:
    """The renderer process's initializer: cap its address space at `MEMORY_BYTES`."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    wanted = MEMORY_BYTES if hard == resource.RLIM_INFINITY else min(MEMORY_BYTES, hard)
    resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))


class Sample:
    """Stands for every declared variable when a template is tried on save: a short value
    that is text, a number and an iterable of three more samples, and has any attribute."""

    def __str__(self) -> str:
        return "sample"

    def __iter__(self) -> Iterator[Sample]:
        return iter((Sample(), Sample(), Sample()))

    def __len__(self) -> int:
        return 3

    def __index__(self) -> int:
        return 3

    def __float__(self) -> float:
        return 3.0

    def __getattr__(self, name: str) -> Sample:
        if name.startswith("_"):
            raise AttributeError(name)
        return self

    def __getitem__(self, key: Any) -> Sample:
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> Sample:
        return self

    def __add__(self, other: Any) -> Sample:
        return self

    __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __add__


SAMPLE_RECIPIENT = {"id": 1, "username": "sample", "first_name": "Sam", "last_name": "Ple"}


def _render_one(template: Template, values: Mapping[str, Any], limit: int, deadline: float) -> str:
    parts: list[str] = []
    size = 0
    with budget(deadline=deadline):
        for chunk in template.generate(values):
            size += len(chunk)
            if size > limit:
                raise _Refused("template_output_too_large", f"renders over {limit} characters")
            parts.append(chunk)
    return "".join(parts)


def _texts(
    templates: Sequence[Template], values: Mapping[str, Any], limit: int, deadline: float
) -> tuple[str, str]:
    subject, body = (_render_one(template, values, limit, deadline) for template in templates)
    title = " ".join(subject.split())
    if not title:
        raise _Refused("template_render_failed", "the subject renders empty")
    return title[:SUBJECT_MAX], body


def render_texts(
    sources: tuple[str, str],
    context: Mapping[str, Any],
    recipients: Sequence[Mapping[str, Any]],
    *,
    limit: int,
    seconds: float,
) -> Texts | Failure:
    """Every recipient's (subject, body), each at most `limit` characters, all within
    `seconds`; or why not."""
    deadline = time.monotonic() + seconds
    try:
        compiled = [ENV.from_string(source) for source in sources]
        return [
            _texts(compiled, {**context, RECIPIENT: dict(person)}, limit, deadline)
            for person in recipients
        ]
    except _Refused as refused:
        return refused.failure
    except OverBudget as exc:
        return Failure("template_too_costly", f"over the rendering budget: {exc}")
    except SecurityError as exc:
        return Failure("template_unsafe", f"refused by the sandbox: {exc}")
    except Exception as exc:  # StrictUndefined, filters, arithmetic, recursion: all the caller's
        return Failure(
            "template_render_failed", f"rendering failed: {type(exc).__name__}: {exc}"[:500]
        )


def trial(source: str, variables: Sequence[str], *, limit: int, seconds: float) -> Failure | None:
    """Why rendering `source` on sample values is refused (over budget, or by the sandbox);
    None if it is not. Any other failure is no verdict: sample values are not real ones."""
    values: dict[str, Any] = {name: Sample() for name in variables}
    values[RECIPIENT] = SAMPLE_RECIPIENT
    try:
        _render_one(ENV.from_string(source), values, limit, time.monotonic() + seconds)
    except OverBudget as exc:
        return Failure("template_too_costly", f"over the rendering budget on sample values: {exc}")
    except SecurityError as exc:
        return Failure("template_unsafe", f"refused by the sandbox on sample values: {exc}")
    except Exception:  # noqa: BLE001 - see the docstring
        return None
    return None

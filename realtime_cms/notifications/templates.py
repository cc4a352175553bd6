"""Notification templates: sandboxed Jinja2 subjects and bodies with declared variables.

A template is checked when saved (syntax, no `_`-prefixed attribute access, every variable
it reads declared in `variables`) and again when used (the context must hold exactly the
declared variables). Rendering runs in `ImmutableSandboxedEnvironment` with
`StrictUndefined`; anything a rendering raises becomes a 422, never a 500. Every template
may also read `recipient` (`id`, `username`, `first_name`, `last_name`) without declaring it.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Mapping
from typing import Any

import sqlalchemy as sa
from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.audit import record
from realtime_cms.errors import Conflict, NotFound, Unprocessable
from realtime_cms.models.notifications import NotificationTemplate
from realtime_cms.notifications.schemas import MAX_MESSAGE
from realtime_cms.principal import Principal
from realtime_cms.rbac.authorize import authorize
from realtime_cms.uniqueness import taken

RECIPIENT = "recipient"
TEMPLATE_FIELDS = ("subject_template", "body_template")
SUBJECT_MAX = 255
# Bounds on what one rendering may build, so a template cannot exhaust the server.
_MAX_RANGE = 1000
_MAX_SEQUENCE = 100_000
_MAX_EXPONENT = 64


def _bounded_range(*args: int) -> range:
    values = range(*args)
    if len(values) > _MAX_RANGE:
        raise SecurityError(f"range() is limited to {_MAX_RANGE} items in templates")
    return values


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox, with `*` and `**` bounded (they can build huge strings or numbers)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, op: str, left: Any, right: Any) -> Any:
        if op == "**" and isinstance(right, int | float) and abs(right) > _MAX_EXPONENT:
            raise SecurityError(f"exponents above {_MAX_EXPONENT} are refused in templates")
        if op == "*":
            for size, times in ((left, right), (right, left)):
                if (
                    isinstance(size, str | list | tuple)
                    and isinstance(times, int)
                    and len(size) * times > _MAX_SEQUENCE
                ):
                    raise SecurityError("the repeated sequence would be too long")
        return operator.pow(left, right) if op == "**" else operator.mul(left, right)


def _environment() -> _Environment:
    env = _Environment(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True)
    env.globals["range"] = _bounded_range
    return env


ENV = _environment()


def _refuse(code: str, message: str, where: str, *, line: int | None = None) -> Unprocessable:
    error: dict[str, Any] = {"loc": ["body", where], "message": message, "type": code}
    if line is not None:
        error["line"] = line
    return Unprocessable(message, code=code, errors=[error])


def _private_names(tree: nodes.Template) -> Iterator[str]:
    """Attribute names starting with `_` the template reads (`a._b`, `a['_b']`)."""
    for attr in tree.find_all(nodes.Getattr):
        if attr.attr.startswith("_"):
            yield attr.attr
    for item in tree.find_all(nodes.Getitem):
        key = item.arg.value if isinstance(item.arg, nodes.Const) else None
        if isinstance(key, str) and key.startswith("_"):
            yield key


def check_source(source: str, where: str, declared: set[str]) -> None:
    """Unprocessable unless `source` compiles, reads no internals and declares its variables."""
    try:
        tree = ENV.parse(source)
        ENV.compile(tree)
    except TemplateSyntaxError as exc:
        message = f"line {exc.lineno}: {exc.message}"
        raise _refuse("template_syntax", message, where, line=exc.lineno) from exc
    except Exception as exc:  # the compiler may reject what the parser accepted
        raise _refuse("template_syntax", f"the template does not compile: {exc}", where) from exc
    private = sorted(set(_private_names(tree)))
    if private:
        message = f"access to internal attributes is refused: {', '.join(private)}"
        raise _refuse("template_unsafe", message, where)
    undeclared = sorted(meta.find_undeclared_variables(tree) - declared - {RECIPIENT})
    if undeclared:
        message = f"variables used but not declared: {', '.join(undeclared)}"
        raise _refuse("template_undeclared_variables", message, where)


def check_context(template: NotificationTemplate, context: Mapping[str, Any]) -> None:
    """Unprocessable naming the declared variables missing from `context`, or the extra ones."""
    declared = set(template.variables or [])
    missing, extra = sorted(declared - set(context)), sorted(set(context) - declared)
    if missing:
        message = f"missing template variables: {', '.join(missing)}"
        raise _refuse("template_missing_variables", message, "context")
    if extra:
        message = f"variables the template does not declare: {', '.join(extra)}"
        raise _refuse("template_extra_variables", message, "context")


def _render_one(source: str, values: Mapping[str, Any], limit: int) -> str:
    parts: list[str] = []
    size = 0
    for chunk in ENV.from_string(source).generate(values):
        size += len(chunk)
        if size > limit:
            raise _refuse(
                "template_output_too_large", f"renders over {limit} characters", "context"
            )
        parts.append(chunk)
    return "".join(parts)


def render(
    template: NotificationTemplate, context: Mapping[str, Any], recipient: Mapping[str, Any]
) -> tuple[str, str]:
    """The (subject, body) for one recipient; Unprocessable for anything that goes wrong."""
    values = {**context, RECIPIENT: dict(recipient)}
    try:
        subject = _render_one(template.subject_template, values, MAX_MESSAGE)
        body = _render_one(template.body_template, values, MAX_MESSAGE)
    except Unprocessable:
        raise
    except SecurityError as exc:
        raise _refuse("template_unsafe", f"refused by the sandbox: {exc}", "context") from exc
    except Exception as exc:  # StrictUndefined, filters, arithmetic, recursion: all the caller's
        message = f"rendering failed: {type(exc).__name__}: {exc}"
        raise _refuse("template_render_failed", message[:500], "context") from exc
    title = " ".join(subject.split())
    if not title:
        raise _refuse("template_render_failed", "the subject renders empty", "context")
    return title[:SUBJECT_MAX], body


# --- CRUD --------------------------------------------------------------------------------------


def _check_template(values: Mapping[str, Any]) -> None:
    declared = set(values["variables"] or [])
    for name in TEMPLATE_FIELDS:
        check_source(values[name], name, declared)


async def get_template(
    db: AsyncSession, principal: Principal, template_id: int
) -> NotificationTemplate:
    authorize(principal, "notifications.manage")
    template = await db.get(NotificationTemplate, template_id)
    if template is None:
        raise NotFound("No such notification template", code="template_not_found")
    return template


async def find_template(db: AsyncSession, key: str | int) -> NotificationTemplate:
    """A template by id or by name (for sending)."""
    if isinstance(key, int):
        found = await db.get(NotificationTemplate, key)
    else:
        found = await db.scalar(
            sa.select(NotificationTemplate).where(NotificationTemplate.name == key).limit(1)
        )
    if found is None:
        raise NotFound(f"No notification template {key!r}", code="template_not_found")
    return found


async def _ensure_unique(db: AsyncSession, name: str, exclude: int | None) -> None:
    same_name = NotificationTemplate.name == name
    if await taken(db, NotificationTemplate.template_id, same_name, exclude=exclude):
        raise Conflict(f"A template named {name!r} exists", code="template_exists")


async def create_template(
    db: AsyncSession, principal: Principal, **values: Any
) -> NotificationTemplate:
    """Store a template once its subject and body check out; audited."""
    authorize(principal, "notifications.manage")
    _check_template(values)
    await _ensure_unique(db, values["name"], None)
    template = NotificationTemplate(**values)
    db.add(template)
    await db.flush()
    await record(
        db,
        principal,
        "notification_template.create",
        "notification_template",
        template.template_id,
        {"name": template.name},
    )
    return template


async def update_template(
    db: AsyncSession, principal: Principal, template_id: int, **changes: Any
) -> NotificationTemplate:
    """Change a template; the result is checked as a whole (variables against both texts)."""
    template = await get_template(db, principal, template_id)
    wanted = {key: value for key, value in changes.items() if value is not None}
    merged = {
        name: wanted.get(name, getattr(template, name)) for name in (*TEMPLATE_FIELDS, "variables")
    }
    _check_template(merged)
    if "name" in wanted:
        await _ensure_unique(db, wanted["name"], template.template_id)
    for key, value in wanted.items():
        setattr(template, key, value)
    await db.flush()
    await record(
        db,
        principal,
        "notification_template.update",
        "notification_template",
        template.template_id,
        {"changed": sorted(wanted)},
    )
    return template


async def delete_template(db: AsyncSession, principal: Principal, template_id: int) -> None:
    template = await get_template(db, principal, template_id)
    await db.delete(template)
    await db.flush()
    await record(
        db,
        principal,
        "notification_template.delete",
        "notification_template",
        template_id,
        {"name": template.name},
    )

"""Notification templates: sandboxed Jinja2 subjects and bodies with declared variables.

A template is checked when saved (syntax, no `_`-prefixed attribute access, every variable
it reads declared in `variables`, and a trial rendering on sample values within the
rendering budget) and again when used (the context must hold exactly the declared
variables). Rendering runs in the budgeted sandbox of `sandbox.py` (`StrictUndefined`), in
renderer processes off the event loop (`rendering.py`); anything a rendering raises
becomes a 422, never a 500. Every template may also read `recipient` (`id`, `username`,
`first_name`, `last_name`) without declaring it.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import Any, TypeVar

import sqlalchemy as sa
from jinja2 import TemplateSyntaxError, meta, nodes
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.audit import record
from realtime_cms.errors import Conflict, NotFound, Unprocessable
from realtime_cms.models.notifications import NotificationTemplate
from realtime_cms.notifications import rendering
from realtime_cms.notifications.rendering import ENV, RECIPIENT
from realtime_cms.notifications.schemas import MAX_MESSAGE
from realtime_cms.principal import Principal
from realtime_cms.rbac.authorize import authorize
from realtime_cms.uniqueness import taken

log = logging.getLogger(__name__)

TEMPLATE_FIELDS = ("subject_template", "body_template")
SUBJECT_MAX = rendering.SUBJECT_MAX
# Every recipient's subject and body of one send are rendered within this many seconds.
SEND_SECONDS = 10.0
# Renderer processes, started on first use. Processes, not threads: a costly rendering in a
# thread still takes turns with the event loop for the interpreter, and every hand-over
# costs the loop up to a switch interval (a 1 s rendering once held an unrelated request
# for 0.5 s). A process also has its own memory limit (`rendering.MEMORY_BYTES`).
RENDERERS = 2
_pool: ProcessPoolExecutor | None = None
_T = TypeVar("_T")


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


def _renderers() -> ProcessPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ProcessPoolExecutor(
            max_workers=RENDERERS,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=rendering.limit_memory,
        )
    return _pool


async def _in_renderer(work: Callable[[], _T]) -> _T:
    """Run `work` in a renderer process; a process that died is replaced (and reported)."""
    global _pool
    try:
        return await asyncio.get_running_loop().run_in_executor(_renderers(), work)
    except BrokenProcessPool as exc:
        log.warning("a template renderer process died; starting new ones")
        broken, _pool = _pool, None
        if broken is not None:
            broken.shutdown(wait=False, cancel_futures=True)
        raise _refuse(
            "template_render_failed", "the rendering ran out of memory or crashed", "context"
        ) from exc


async def render_all(
    template: NotificationTemplate,
    context: Mapping[str, Any],
    recipients: Sequence[Mapping[str, Any]],
) -> list[tuple[str, str]]:
    """The (subject, body) of each recipient, in order; Unprocessable if any goes wrong.

    Rendered in a renderer process, each rendering within the budget of `sandbox.py` and
    the whole send within `SEND_SECONDS`: a costly template fails alone, and the event loop
    (even its share of the interpreter) stays with other requests meanwhile.
    """
    work = partial(
        rendering.render_texts,
        (template.subject_template, template.body_template),
        dict(context),
        [dict(recipient) for recipient in recipients],
        limit=MAX_MESSAGE,
        seconds=SEND_SECONDS,
    )
    result = await _in_renderer(work)
    if isinstance(result, rendering.Failure):
        raise _refuse(result.code, result.message, "context")
    return result


async def check_cost(source: str, where: str, declared: Sequence[str]) -> None:
    """Unprocessable if a trial rendering of `source` on sample values is over budget or
    refused by the sandbox."""
    work = partial(rendering.trial, source, list(declared), limit=MAX_MESSAGE, seconds=SEND_SECONDS)
    failure = await _in_renderer(work)
    if failure is not None:
        raise _refuse(failure.code, failure.message, where)


# --- CRUD --------------------------------------------------------------------------------------


async def _check_template(values: Mapping[str, Any]) -> None:
    declared = values["variables"] or []
    for name in TEMPLATE_FIELDS:
        check_source(values[name], name, set(declared))
    for name in TEMPLATE_FIELDS:
        await check_cost(values[name], name, declared)


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
    await _check_template(values)
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
    await _check_template(merged)
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

"""Job types: a name, a validated payload, a handler, and how the queue treats them.

Every piece of background work is a registered `JobType`. Its payload is a pydantic model,
checked when the job is enqueued (an unknown type or a bad payload is `Unprocessable` naming
the field) and parsed again when it runs. The handler gets a `JobContext`: the job's id and
attempt, an idempotency key for external effects, and a session whose writes commit in the
same transaction as the job's completion, so a job's database effects happen exactly once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.errors import Unprocessable

if TYPE_CHECKING:
    from realtime_cms.runtime import Runtime

P = TypeVar("P", bound=BaseModel)

NAME_MAX = 50
QUEUE_MAX = 50


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a running job knows about itself."""

    job_id: str
    type: str
    attempt: int
    max_attempts: int
    # Writes here commit with the job's completion, or not at all.
    db: AsyncSession
    # When the job was due (its not-before time): periodic jobs report their lateness.
    run_at: datetime
    started_at: datetime
    # The process' core: mailer, notifier, live documents, settings.
    runtime: Runtime
    # Effects to run once the completion committed (live pushes); failures are logged.
    after_commit: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # The lease holder running it (`worker_processes.id`, also its `workers.worker_id`);
    # None when a handler is run directly (tests, CLI).
    process_id: str | None = None

    @property
    def idempotency_key(self) -> str:
        """Stable across a retry of the same attempt's effect: job id and attempt."""
        return f"{self.job_id}:{self.attempt}"


# A handler returns a short text kept as the job's `output` (or None).
Handler = Callable[[JobContext, P], Awaitable[str | None]]


class NoPayload(BaseModel):
    """The payload of a job type that takes none."""

    model_config = {"extra": "forbid"}


@dataclass(frozen=True, slots=True)
class JobType(Generic[P]):
    name: str
    payload: type[P]
    handler: Handler[P]
    queue: str = "default"
    # Lower runs first.
    priority: int = 0
    max_attempts: int = 5
    timeout_seconds: float = 300.0
    # Whether an operator may enqueue it over REST (`jobs.manage`); internal types are not.
    operator: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if not 0 < len(self.name) <= NAME_MAX or not 0 < len(self.queue) <= QUEUE_MAX:
            raise ValueError(f"job type {self.name!r}: name and queue are 1-50 characters")

    def validate(self, payload: Any) -> dict[str, Any]:
        """The payload as stored (JSON), or Unprocessable naming the bad fields."""
        try:
            model = (
                payload
                if isinstance(payload, self.payload)
                else self.payload.model_validate(payload)
            )
        except ValidationError as exc:
            errors = [
                {"field": ".".join(str(p) for p in ("payload", *e["loc"])), "message": e["msg"]}
                for e in exc.errors()
            ]
            raise Unprocessable(
                f"Invalid payload for job type {self.name}", code="invalid_payload", errors=errors
            ) from exc
        return model.model_dump(mode="json")

    async def run(self, context: JobContext, payload: dict[str, Any]) -> str | None:
        return await self.handler(context, self.payload.model_validate(payload))


@dataclass(slots=True)
class Registry:
    """The job types a process knows; enqueueing or running another one is refused."""

    _types: dict[str, JobType[Any]] = field(default_factory=dict)

    def add(self, job_type: JobType[Any]) -> JobType[Any]:
        if job_type.name in self._types:
            raise ValueError(f"job type {job_type.name!r} is registered twice")
        self._types[job_type.name] = job_type
        return job_type

    def get(self, name: str, *, field: str = "type") -> JobType[Any]:
        """The job type `name`, or Unprocessable naming `field` (where the name came from)."""
        found = self._types.get(name)
        if found is None:
            raise Unprocessable(
                f"No job type {name!r}",
                code="unknown_job_type",
                errors=[{"field": field, "message": "not a registered job type"}],
            )
        return found

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[JobType[Any]]:
        return iter(sorted(self._types.values(), key=lambda t: t.name))

    def queues(self) -> list[str]:
        return sorted({t.queue for t in self._types.values()})

"""The `realtime-cms` command: serve, worker, migrate, create-user, demo."""

from __future__ import annotations

import argparse
import asyncio
import gc
import getpass
import logging
import secrets
import sys
from collections.abc import Sequence

from aiohttp import web
from pydantic import ValidationError

from realtime_cms import migrate
from realtime_cms.config import Settings
from realtime_cms.db import create_engine, session_factory, transaction
from realtime_cms.demo import DemoLogin, load_demo, read_logins, save_logins
from realtime_cms.errors import CMSError
from realtime_cms.logconfig import configure_logging
from realtime_cms.security.passwords import Passwords

log = logging.getLogger("realtime_cms")


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        messages = "; ".join(str(err["msg"]).removeprefix("Value error, ") for err in exc.errors())
        sys.exit(f"realtime-cms: configuration refused: {messages}")


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def _seed_roles(settings: Settings) -> None:
    """Bring the permission catalog and default roles up to this release (idempotent)."""
    from realtime_cms.rbac.service import seed_defaults

    engine = create_engine(settings.database_url)
    try:
        async with transaction(session_factory(engine)) as db:
            await seed_defaults(db)
    finally:
        await engine.dispose()


def _upgrade(settings: Settings, revision: str = "head") -> None:
    migrate.upgrade(settings.database_url, revision)
    if revision == "head":
        asyncio.run(_seed_roles(settings))


async def _freeze_heap(_app: web.Application) -> None:
    """Move everything loaded at startup (modules, models, the ORM's caches) out of the
    cyclic garbage collector's sight: a full collection then scans only what requests made,
    instead of pausing the event loop for the whole heap every few seconds."""
    gc.collect()
    gc.freeze()


def cmd_serve(args: argparse.Namespace) -> None:
    from handlers.app import create_app
    from realtime_cms.heap import cap_arenas

    cap_arenas()  # before any thread starts (realtime_cms/heap.py says why)
    settings = _settings()
    if args.no_worker:
        settings = settings.model_copy(update={"worker_embedded": False})
    if settings.is_embedded:
        _upgrade(settings)
    host, port = args.host or settings.host, args.port if args.port is not None else settings.port
    log.info(
        "realtime_cms listening on http://%s:%s (database %s)",
        host,
        port,
        settings.database_url.split("://")[0],
    )
    app = create_app(settings)
    app.on_startup.append(_freeze_heap)
    web.run_app(
        app,
        host=host,
        port=port,
        loop=_new_loop(),
        print=None,
        access_log=None,
        # Room for the longest query a route accepts (a 6,000-character state vector, each
        # character percent-encoded) so that routes, not the HTTP parser, answer it.
        max_line_size=80 * 1024,
    )


def _queues(raw: str | None) -> list[str]:
    return [q.strip() for q in (raw or "").split(",") if q.strip()]


def cmd_worker(args: argparse.Namespace) -> None:
    from handlers import worker
    from realtime_cms.heap import cap_arenas
    from realtime_cms.runtime import worker_options

    cap_arenas()
    # No migration here: `migrate` (the release step) or `serve` (embedded) does it, once.
    settings = _settings()
    loop = _new_loop()
    try:
        if args.autoscale:
            loop.run_until_complete(_autoscale(settings, args))
            return
        queues = _queues(args.queues) or settings.job_queues
        options = worker_options(settings, queues, concurrency=args.concurrency)
        loop.run_until_complete(worker.run(settings, options))
    finally:
        loop.close()


async def _autoscale(settings: Settings, args: argparse.Namespace) -> None:
    from handlers import autoscale

    try:
        bounds = autoscale.parse_bounds(args.autoscale)
    except ValueError as exc:
        sys.exit(f"realtime-cms: --autoscale: {exc}")
    child_args = []
    if args.concurrency:
        child_args += ["--concurrency", str(args.concurrency)]
    if args.queues:
        child_args += ["--queues", args.queues]
    await autoscale.run(settings, bounds, child_args)


def cmd_migrate(args: argparse.Namespace) -> None:
    settings = _settings()
    if args.downgrade:
        migrate.downgrade(settings.database_url, args.revision or "base")
    else:
        _upgrade(settings, args.revision or "head")
    log.info("migrations applied")


async def _create_user(settings: Settings, args: argparse.Namespace, password: str) -> None:
    from realtime_cms.accounts.service import create_user
    from realtime_cms.principal import system
    from realtime_cms.rbac.catalog import PERMISSIONS
    from realtime_cms.rbac.service import seed_defaults

    engine = create_engine(settings.database_url)
    try:
        async with transaction(session_factory(engine)) as db:
            await seed_defaults(db)
            await create_user(
                db,
                Passwords(settings),
                system(frozenset(PERMISSIONS)),
                username=args.username,
                email=args.email,
                password=password,
                roles=["admin" if args.admin else args.role],
            )
    finally:
        await engine.dispose()


def cmd_create_user(args: argparse.Namespace) -> None:
    settings = _settings()
    migrate.upgrade(settings.database_url)
    password = args.password_stdin and sys.stdin.readline().rstrip("\n") or None
    generated = False
    if password is None and sys.stdin.isatty():
        password = getpass.getpass("Password (empty to generate one): ") or None
    if password is None:
        password, generated = secrets.token_urlsafe(12), True
    try:
        asyncio.run(_create_user(settings, args, password))
    except CMSError as exc:
        sys.exit(f"realtime-cms: {exc.message}")
    print(f"created user {args.username}" + (f" with password {password}" if generated else ""))


def _print_logins(settings: Settings, logins: Sequence[DemoLogin]) -> None:
    url = settings.public_url or f"http://{settings.host}:{settings.port}"
    print(f"\n  realtime_cms demo: open {url}/\n")
    for login in logins:
        print(f"    {login.role:<7} username {login.username:<8} password {login.password}")
    print()


async def _demo(settings: Settings) -> list[DemoLogin] | None:
    engine = create_engine(settings.database_url)
    try:
        async with transaction(session_factory(engine)) as db:
            return await load_demo(db, Passwords(settings))
    finally:
        await engine.dispose()


def cmd_demo(args: argparse.Namespace) -> None:
    settings = _settings()
    migrate.upgrade(settings.database_url)
    logins = asyncio.run(_demo(settings))
    if logins is not None:
        save_logins(logins)
        _print_logins(settings, logins)
        return
    saved = read_logins()
    if saved:
        print("demo data already loaded; the logins created then:")
        _print_logins(settings, saved)
    else:
        print("demo data already loaded (its logins were printed when it was created)")


def _positive(raw: str) -> int:
    value = int(raw)
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError("give a number from 1 to 1000")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="realtime-cms", description="realtime collaborative CMS server"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve", help="run the web server (migrates the embedded SQLite database first)"
    )
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="run no embedded job worker (dedicated `realtime-cms worker` processes do)",
    )
    serve.set_defaults(func=cmd_serve)
    work = sub.add_parser("worker", help="run background jobs (until SIGTERM)")
    work.add_argument("--concurrency", type=_positive, help="jobs at once (RCMS_JOB_CONCURRENCY)")
    work.add_argument("--queues", help="comma-separated queues to take (default: every queue)")
    work.add_argument(
        "--autoscale",
        metavar="MIN:MAX",
        help="run MIN..MAX worker children following the scaling rules (docs/operations.md)",
    )
    work.set_defaults(func=cmd_worker)
    mig = sub.add_parser("migrate", help="apply database migrations (upgrade to head by default)")
    mig.add_argument("--revision")
    mig.add_argument(
        "--downgrade", action="store_true", help="downgrade (to base unless --revision)"
    )
    mig.set_defaults(func=cmd_migrate)
    user = sub.add_parser("create-user", help="create a user account")
    user.add_argument("username")
    user.add_argument("--email", required=True)
    user.add_argument("--admin", action="store_true", help="grant the admin role")
    user.add_argument("--role", default="viewer", choices=["admin", "editor", "author", "viewer"])
    user.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    user.set_defaults(func=cmd_create_user)
    demo = sub.add_parser("demo", help="load demo data once and print the demo logins")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
        configure_logging(settings.log_level, settings.log_format)
    except ValidationError:
        configure_logging()
    args.func(args)


if __name__ == "__main__":
    main()

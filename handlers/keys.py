"""Typed application state: every shared object lives behind one of these keys."""

from __future__ import annotations

import socketio
from aiohttp import web
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from realtime_cms.collab.manager import RoomManager
from realtime_cms.collab.relay import Relay
from realtime_cms.config import Settings
from realtime_cms.content.binding import ContentBinding
from realtime_cms.db import SessionFactory
from realtime_cms.documents.presence import Presence
from realtime_cms.events import EventBus
from realtime_cms.mail import MailSender
from realtime_cms.notifications.hub import NotificationHub
from realtime_cms.notifications.service import Dispatcher
from realtime_cms.ratelimit import RateLimiter
from realtime_cms.runtime import Runtime
from realtime_cms.security.passwords import Passwords
from realtime_cms.versions.autosave import Autosave

# The core, assembled (realtime_cms/runtime.py); the keys below publish its parts.
RUNTIME = web.AppKey("runtime", Runtime)
SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONS = web.AppKey("sessions", SessionFactory)
# Domain events of committed transactions (every session of SESSIONS carries it).
EVENTS = web.AppKey("events", EventBus)
REDIS: web.AppKey[Redis | None] = web.AppKey("redis")
SIO = web.AppKey("sio", socketio.AsyncServer)
# The second Socket.IO server: `/collab` with msgpack framing at /socket.io-msgpack/.
SIO_MSGPACK = web.AppKey("sio_msgpack", socketio.AsyncServer)
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)
MAILER = web.AppKey("mailer", MailSender)
PASSWORDS = web.AppKey("passwords", Passwords)
ROOMS = web.AppKey("rooms", RoomManager)
RELAY = web.AppKey("relay", Relay)
PRESENCE = web.AppKey("presence", Presence)
CONTENT = web.AppKey("content", ContentBinding)
AUTOSAVE = web.AppKey("autosave", Autosave)
NOTIFICATION_HUB = web.AppKey("notification_hub", NotificationHub)
NOTIFIER = web.AppKey("notifier", Dispatcher)

"""pycrdt-websocket (PyPI) served over aiohttp: the Python peer, y-websocket protocol.

Each connection at `/<room>` is handed to `WebsocketServer.serve` through a small `Channel`
over aiohttp's WebSocket. With --sqlite-dir DIR every room gets a `SQLiteYStore` (the
package's durable store: updates are written as they arrive, not before relaying), one
database file per room, named after the room: pycrdt-store 0.1.5 rooms sharing one file race
while creating it (`FileNotFoundError` renaming `ystore.db` to `ystore(5).db`). A room whose
file exists is loaded from it before it serves anyone (pycrdt-websocket leaves loading to
the application: `YRoom` only writes to its store), so a restarted server has its documents.

    bench/.venv/bin/python bench/servers/pycrdt_ws.py --port 1234 [--sqlite-dir /tmp/ystore]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
from pathlib import Path

import uvloop
from aiohttp import WSMsgType, web
from pycrdt import Doc
from pycrdt.store import SQLiteYStore, YDocNotFound
from pycrdt.websocket import WebsocketServer, YRoom


class AiohttpChannel:
    """pycrdt's `Channel` protocol over an aiohttp WebSocket."""

    def __init__(self, ws: web.WebSocketResponse, path: str) -> None:
        self._ws = ws
        self._path = path

    @property
    def path(self) -> str:
        return self._path

    def __aiter__(self) -> AiohttpChannel:
        return self

    async def __anext__(self) -> bytes:
        message = await self._ws.receive()
        if message.type != WSMsgType.BINARY:
            raise StopAsyncIteration
        return bytes(message.data)

    async def send(self, message: bytes) -> None:
        await self._ws.send_bytes(message)

    async def recv(self) -> bytes:
        return await self.__anext__()


class BenchServer(WebsocketServer):
    """Rooms created one at a time, with a `SQLiteYStore` each when given a database path.

    pycrdt-websocket 0.16.5 hangs when several clients are the first to open one room at
    the same time (each starts the room); a lock per server serializes room creation.
    """

    def __init__(self, db_dir: Path | None) -> None:
        super().__init__(rooms_ready=True, auto_clean_rooms=False)
        self._db_dir = db_dir
        self._rooms_lock = asyncio.Lock()

    async def get_room(self, name: str) -> YRoom:
        async with self._rooms_lock:
            if name not in self.rooms:
                ystore, ydoc = None, Doc()
                if self._db_dir is not None:
                    db_file = self._db_dir / f"{hashlib.sha1(name.encode()).hexdigest()}.db"
                    store = type("BenchStore", (SQLiteYStore,), {"db_path": str(db_file)})
                    if db_file.exists():
                        await load(store(path=name), ydoc)
                    ystore = store(path=name)
                self.rooms[name] = YRoom(ready=True, ystore=ystore, ydoc=ydoc, log=self.log)
            room = self.rooms[name]
            await self.start_room(room)
        return room


async def load(ystore: SQLiteYStore, ydoc: Doc) -> None:
    """Apply what the store holds to `ydoc` (a separate store instance, stopped after)."""
    async with ystore:
        try:
            await ystore.apply_updates(ydoc)
        except YDocNotFound:
            pass


async def main(port: int, db_dir: Path | None) -> None:
    server = BenchServer(db_dir)

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        await server.serve(AiohttpChannel(ws, request.path.lstrip("/")))
        return ws

    app = web.Application()
    app.router.add_get("/{name:.*}", handle)
    async with server:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print(f"listening on {port}", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sqlite-dir", type=Path, help="SQLiteYStore files (durable run)")
    args = parser.parse_args()
    if args.sqlite_dir is not None:
        args.sqlite_dir.mkdir(parents=True, exist_ok=True)
    uvloop.run(main(args.port, args.sqlite_dir))

"""The floors: the least a y-websocket server on aiohttp can do, to compare servers against.

--mode relay: every binary frame on `/<room>` goes to every other socket of that room, as
is (no CRDT, no sync answers: clients start sending once connected).
--mode crdt: also a pycrdt `Doc` per room: sync step 1 is answered with sync step 2, and an
update (sync step 2 or update message) is applied before its frame is relayed.

Both write each frame once per recipient with `send_bytes`, from the receiving task: no
task per recipient, no re-encoding.

    bench/.venv/bin/python bench/floors/relay.py --mode crdt --port 1234
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections import defaultdict

import uvloop
from aiohttp import WSMsgType, web
from pycrdt import Doc

SYNC, STEP1, STEP2, UPDATE = 0, 0, 1, 2


def read_var_uint(data: bytes, pos: int) -> tuple[int, int]:
    """lib0's varUint at `pos`: (value, next position)."""
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def var_uint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def make_app(crdt: bool) -> web.Application:
    rooms: dict[str, set[web.WebSocketResponse]] = defaultdict(set)
    docs: dict[str, Doc] = defaultdict(Doc)

    def answer(name: str, frame: bytes) -> bytes | None:
        """Apply a sync frame to the room's doc; the reply to send back, if any."""
        kind, pos = read_var_uint(frame, 0)
        if kind != SYNC:
            return None
        step, pos = read_var_uint(frame, pos)
        length, pos = read_var_uint(frame, pos)
        payload = frame[pos : pos + length]
        if step == STEP1:
            update = docs[name].get_update(payload)
            return bytes([SYNC, STEP2]) + var_uint(len(update)) + update
        docs[name].apply_update(payload)
        return None

    async def handle(request: web.Request) -> web.WebSocketResponse:
        name = request.match_info["name"]
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        room = rooms[name]
        room.add(ws)
        try:
            if crdt:
                sv = docs[name].get_state()
                await ws.send_bytes(bytes([SYNC, STEP1]) + var_uint(len(sv)) + sv)
            async for message in ws:
                if message.type != WSMsgType.BINARY:
                    continue
                frame = message.data
                if crdt:
                    reply = answer(name, frame)
                    if reply is not None:
                        await ws.send_bytes(reply)
                        continue
                for peer in tuple(room):
                    if peer is not ws:
                        with contextlib.suppress(ConnectionError):
                            await peer.send_bytes(frame)
        finally:
            room.discard(ws)
        return ws

    app = web.Application()
    app.router.add_get("/{name:.*}", handle)
    return app


async def main(mode: str, port: int) -> None:
    runner = web.AppRunner(make_app(mode == "crdt"), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"listening on {port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("relay", "crdt"), required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvloop.run(main(args.mode, args.port))

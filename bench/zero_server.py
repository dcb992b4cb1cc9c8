"""A server that does no work, for bench/http.py: what the SDK client and the loopback
transport cost on their own.

It answers every request at once with the echo graph's final values and the headers weft
sends with a waiting run's result (``Content-Location``, ``Location``), from a raw ASGI app
served by uvicorn as ``weft serve`` is (uvloop and httptools, no access log). Run::

    python -P bench/zero_server.py

It prints ``zero serving http://127.0.0.1:PORT`` (a free port) and serves until terminated.
"""

from __future__ import annotations

import socket
import uuid
from typing import Any

import orjson
import uvicorn

BODY = orjson.dumps({"value": 1, "trail": [0]})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    while (await receive()).get("more_body"):
        pass
    parts = scope["path"].split("/")
    thread_id = parts[2] if parts[1] == "threads" and len(parts) > 2 else str(uuid.uuid4())
    where = f"/threads/{thread_id}/runs/{uuid.uuid4()}"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(BODY)).encode()),
                (b"content-location", where.encode()),
                (b"location", f"{where}/join".encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    print(f"zero serving http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()

"""Webhooks: when a run ends, POST it with its final values to the URL it gave.

URLs that resolve to loopback, private, link-local or otherwise reserved addresses are refused
when the run is created (a server should not be made to call its own network), unless
``webhooks.allow_private`` is set. Delivery retries network errors and 5xx with backoff.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import httpx

from weft.errors import BadRequestError
from weft.jsonable import to_jsonable
from weft.schema import Run

RETRIES = 4
BACKOFF = 0.5


class Webhooks:
    """Checks webhook URLs and delivers run results in the background."""

    def __init__(self, *, allow_private: bool = False, timeout: float = 10.0) -> None:
        self.allow_private = allow_private
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def check_url(self, url: str) -> None:
        """BadRequestError unless ``url`` is an http(s) URL to a public address."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadRequestError(f"webhook must be an http:// or https:// URL, not {url!r}")
        if self.allow_private:
            return
        host = parts.hostname
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, parts.port or (443 if parts.scheme == "https" else 80)
            )
        except (socket.gaierror, UnicodeError) as e:
            raise BadRequestError(f"webhook host {host!r} does not resolve: {e}") from None
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
            if not address.is_global:
                raise BadRequestError(
                    f"webhook {url!r} points to {address}, a loopback, private or reserved "
                    "address; set webhooks.allow_private: true in the config to allow it"
                )

    def send(self, url: str, run: Run, values: Any) -> None:
        """Deliver in the background (the run's end does not wait for the receiver)."""
        body = {**run.to_api(), "values": to_jsonable(values)}
        task = asyncio.get_running_loop().create_task(self._deliver(url, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, body: dict[str, Any]) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        for attempt in range(RETRIES + 1):
            try:
                response = await self._client.post(url, json=body)
                if response.status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            if attempt < RETRIES:
                await asyncio.sleep(BACKOFF * 2**attempt)

    async def close(self) -> None:
        """Wait a little for deliveries under way, then close the client."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
        if self._client is not None:
            await self._client.aclose()
            self._client = None


__all__ = ["Webhooks"]

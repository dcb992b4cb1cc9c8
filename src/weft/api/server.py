"""``weft serve``: uvicorn on the app of :func:`weft.api.create_app`, on the asked port or,
when it is taken, the next free one."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from pathlib import Path

import uvicorn

from weft.api import create_app
from weft.config import Settings
from weft.errors import ConfigError
from weft.storage import mask_url

PORT_TRIES = 100
"""How many ports after a taken one ``weft serve`` tries."""

_CONFIG_ENV = "WEFT_SERVE_CONFIG"


def bind(host: str, port: int, *, tries: int = PORT_TRIES) -> socket.socket:
    """A listening socket on ``port`` or the first free port after it (0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    last: OSError | None = None
    for candidate in range(port, port + tries) if port else [0]:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, candidate))
        except OSError as e:
            sock.close()
            if e.errno != errno.EADDRINUSE:
                raise ConfigError(f"cannot listen on {host}:{candidate}: {e.strerror}") from None
            last = e
            continue
        sock.listen(2048)
        sock.setblocking(False)
        return sock
    raise ConfigError(
        f"ports {port} to {port + tries - 1} on {host} are all taken ({last}); pass a free --port"
    )


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    reload: bool = False,
    access_log: bool = False,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM): the runtime then gives in-flight runs
    ``http.shutdown_grace`` seconds and leaves the rest resumable. ``access_log``: one log
    line per request (uvicorn's), otherwise only start-up, shutdown, warnings and errors."""
    sock = bind(host, port)
    actual = sock.getsockname()[1]
    if actual != port:
        announce(f"port {port} is taken; using {actual} instead")
    shown = f"[{host}]" if ":" in host else host
    announce(
        f"weft serving http://{shown}:{actual} (database {mask_url(settings.database_url)}, "
        f"API docs at http://{shown}:{actual}/docs)"
    )
    if reload:
        sock.close()  # the reloader's worker binds it again
        if settings.config_path is not None:
            os.environ[_CONFIG_ENV] = str(settings.config_path)
        os.environ["WEFT_DATABASE_URL"] = settings.database_url
        uvicorn.run(
            "weft.api.server:app_from_env",
            factory=True,
            host=host,
            port=actual,
            reload=True,
            reload_dirs=[str(settings.base_dir), str(Path(__file__).parents[1])],
            log_level="info",
            access_log=access_log,
            timeout_graceful_shutdown=int(settings.http.shutdown_grace) + 5,
        )
        return
    config = uvicorn.Config(
        create_app(settings),
        log_level="info",
        access_log=access_log,
        timeout_graceful_shutdown=int(settings.http.shutdown_grace) + 5,
    )
    uvicorn.Server(config).run(sockets=[sock])  # uvloop and httptools when installed


def app_from_env() -> object:
    """The app for ``--reload``'s worker process: settings from the environment the parent
    set."""
    return create_app(Settings.load(os.environ.get(_CONFIG_ENV)))


__all__ = ["PORT_TRIES", "app_from_env", "bind", "serve"]

"""Serve a viewer folder on localhost (the page also works from a file; this is for remote
machines through an SSH tunnel, or browsers that restrict ``file://``)."""

from __future__ import annotations

import functools
import logging
import os
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bsafusion.errors import InputError

__all__ = ["make_server"]

log = logging.getLogger(__name__)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # the base's signature
        log.debug("%s %s", self.address_string(), format % args)


def make_server(view_dir: str | os.PathLike, port: int = 8000, host: str = "127.0.0.1"
                ) -> ThreadingHTTPServer:
    """An HTTP server of ``view_dir`` bound to ``host:port`` (0 = any free port); call its
    ``serve_forever()`` and ``server_close()``. ``server_address`` says the port taken.

    Raises:
        InputError: the folder has no ``index.html``, or the port cannot be bound.
    """
    folder = Path(view_dir)
    if not (folder / "index.html").is_file():
        raise InputError(folder, "has no index.html to serve")
    handler = functools.partial(_QuietHandler, directory=str(folder))
    try:
        return ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise InputError("port", f"cannot listen on {host}:{port} ({exc.strerror or exc})"
                         ) from None

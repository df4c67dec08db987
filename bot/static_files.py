"""The web pages' own files (the demo's page, the Mini App): served from one folder only."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aiohttp import web

TYPES: Final = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


def static_file(folder: Path, name: str) -> web.FileResponse:
    """`folder`/`name` when it is one of the page's files (HTML, script, style) right in that
    folder; 404 for anything else, a path that climbs out included."""
    path = folder / name
    if path.suffix not in TYPES or path.parent != folder or not path.is_file():
        raise web.HTTPNotFound
    return web.FileResponse(
        path, headers={"Content-Type": TYPES[path.suffix], "Cache-Control": "no-cache"}
    )

"""Repeated requests answered from the current snapshot's response cache before routing.

A snapshot never changes, so a page the API produced once for a (path, query) on it is the
answer to every later identical request on it (`OpenSnapshot.responses`, filled by the
endpoints). This ASGI layer sits inside the access log and API-key middleware (so keys are
checked and every request logged as before) and in front of FastAPI: a GET whose (path,
query) is cached for the current snapshot gets the cached body, or a 304 when the client's
`If-None-Match` names the snapshot, with the same headers the endpoint sends, without routing,
parameter parsing, dependencies or a worker-thread hop (together ~4/5 of a cached repeat's
cost). Only successful responses are cached, and only after the endpoint validated the
request, so whatever this layer answers was valid on this snapshot; anything else (a miss, no
snapshot yet, another method) goes to the app unchanged.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from marketflow_assets.api.snapshots import NoSnapshotError, OpenSnapshot, SnapshotReader

CACHE_CONTROL = "public, max-age=60"
IF_NONE_MATCH = b"if-none-match"


def cache_key(scope: Scope) -> tuple[str, bytes]:
    """The response cache's key for a request: its path and raw query string."""
    return scope["path"], scope.get("query_string", b"")


def etag_matches(snap: OpenSnapshot, header: str | None) -> bool:
    """Whether an `If-None-Match` header value names this snapshot (or is `*`)."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    return f'"{snap.id}"' in [t.strip().removeprefix("W/") for t in header.split(",")]


def response_headers(snap: OpenSnapshot, next_cursor: str | None) -> dict[str, str]:
    """Headers of a data response (fresh, cached or 304) on `snap`."""
    headers = {"ETag": f'"{snap.id}"', "Cache-Control": CACHE_CONTROL, "X-Snapshot-Id": snap.id}
    if next_cursor:
        headers["X-Next-Cursor"] = next_cursor
    return headers


class CachedResponses:
    def __init__(self, app: ASGIApp, reader: SnapshotReader):
        self.app = app
        self.reader = reader

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        try:
            snap = self.reader.get()
        except NoSnapshotError:
            await self.app(scope, receive, send)
            return
        hit = snap.responses.get(cache_key(scope))
        if hit is None:
            await self.app(scope, receive, send)
            return
        body, media, next_cursor = hit
        headers = response_headers(snap, next_cursor)
        sent = next((v for k, v in scope["headers"] if k == IF_NONE_MATCH), None)
        if etag_matches(snap, sent.decode("latin-1") if sent is not None else None):
            status, body = 304, b""
            del headers["X-Snapshot-Id"]
            headers.pop("X-Next-Cursor", None)
            raw = [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()]
        else:
            status = 200
            raw = [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()]
            raw += [
                (b"content-length", str(len(body)).encode()),
                (b"content-type", media.encode()),
            ]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

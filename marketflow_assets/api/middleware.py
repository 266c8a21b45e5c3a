"""API keys and the access log, as one pure ASGI middleware (no per-request task overhead).

Access log: one JSON line per request on the `marketflow.api.access` logger: method, path,
query string, status, bytes, latency in ms, snapshot id, client address. Request headers (so
API keys) are never logged."""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

ACCESS_LOG = logging.getLogger("marketflow.api.access")
API_KEY_HEADER = b"x-api-key"
UNAUTHORIZED = json.dumps(
    {
        "detail": "missing or unknown API key: send one in the X-API-Key header",
        "parameter": "X-API-Key",
    }
).encode()


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp, api_keys: Iterable[str] = (), open_paths: Iterable[str] = ()):
        self.app = app
        self.keys = [k.encode() for k in api_keys]
        self.open_paths = tuple(open_paths)

    def _authorized(self, scope: Scope) -> bool:
        path = scope.get("path", "")
        if not self.keys or not path.startswith("/v1/") or path in self.open_paths:
            return True
        sent = next((v for k, v in scope.get("headers", ()) if k == API_KEY_HEADER), None)
        # Compare with every key (constant time each), so timing does not tell which matched.
        matches = [hmac.compare_digest(sent, k) for k in self.keys] if sent is not None else []
        return any(matches)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        seen = {"status": 500, "bytes": 0, "snapshot": None}

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                for key, value in message.get("headers", ()):
                    if key == b"x-snapshot-id":
                        seen["snapshot"] = value.decode()
            elif message["type"] == "http.response.body":
                seen["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            if self._authorized(scope):
                await self.app(scope, receive, recording_send)
            else:
                await recording_send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"www-authenticate", b"ApiKey"),
                            (b"content-length", str(len(UNAUTHORIZED)).encode()),
                        ],
                    }
                )
                await recording_send({"type": "http.response.body", "body": UNAUTHORIZED})
        finally:
            if ACCESS_LOG.isEnabledFor(logging.INFO):
                client = scope.get("client")
                ACCESS_LOG.info(
                    json.dumps(
                        {
                            "method": scope.get("method"),
                            "path": scope.get("path"),
                            "query": scope.get("query_string", b"").decode("latin-1")[:500],
                            "status": seen["status"],
                            "bytes": seen["bytes"],
                            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
                            "snapshot": seen["snapshot"],
                            "client": f"{client[0]}:{client[1]}" if client else None,
                        }
                    )
                )

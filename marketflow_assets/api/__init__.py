"""The read-only HTTP API (FastAPI) over the current serving snapshot: `create_app(settings)`;
`python -m marketflow_assets.api` (`make serve`) runs it with uvicorn."""

from marketflow_assets.api.app import create_app

__all__ = ["create_app"]

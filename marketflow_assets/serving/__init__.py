"""Serving: immutable, versioned read-only snapshots of what users read (DESIGN.md, "Serving").

`current_snapshot_path(settings)` is the stable path every reader opens read-only; the asset
`serving/snapshot` (assets/serving.py) publishes new ones with `publish_snapshot`.
"""

from marketflow_assets.serving.layout import current_snapshot_path, serving_dir

__all__ = ["current_snapshot_path", "serving_dir"]

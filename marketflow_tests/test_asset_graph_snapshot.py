"""The public asset graph, pinned: a change to it shows up in review as a diff of one file.

`snapshots/asset_graph.json` renders what users and downstream code rely on: asset keys,
groups, kinds, tags, partitions (definition and range), backfill policy, pools, dependencies
(with any non-default partition mapping), checks (name, blocking, extra dependencies), plus the
names of the schedules, sensors and resources. It leaves out what changes without changing the
contract (descriptions, metadata, dbt code versions).

When the graph is meant to change, regenerate the file and commit it with the change:

    MARKETFLOW_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest marketflow_tests/test_asset_graph_snapshot.py
"""

from __future__ import annotations

import difflib
import functools
import json
import os
from pathlib import Path
from typing import Any

import dagster as dg

from marketflow_assets.definitions import build_definitions
from marketflow_tests.helpers import FRIDAY_EVENING, make_settings

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"
UPDATE_ENV = "MARKETFLOW_UPDATE_SNAPSHOTS"


@functools.cache
def _partitions(pdef: dg.PartitionsDefinition | None) -> dict[str, Any] | None:
    """Cached: every session-partitioned asset shares one definition (listing keys costs ~0.2 s)."""
    if pdef is None:
        return None
    rendered: dict[str, Any] = {"type": type(pdef).__name__}
    if isinstance(pdef, dg.TimeWindowPartitionsDefinition):
        rendered |= {
            "start": pdef.start.isoformat(),
            "timezone": pdef.timezone,
            "cron_schedule": pdef.cron_schedule,
            "end_offset": pdef.end_offset,
            "exclusions": len(pdef.exclusions or ()),
        }
    # The range as the pinned simulator clock sees it (Dagster evaluates `end_offset` against it).
    keys = pdef.get_partition_keys(current_time=FRIDAY_EVENING)
    rendered |= {
        "count": len(keys),
        "first": keys[0] if keys else None,
        "last": keys[-1] if keys else None,
    }
    return rendered


def _mapping(mapping: dg.PartitionMapping | None) -> str | None:
    return None if mapping is None else repr(mapping)


def render_graph(defs: dg.Definitions) -> dict[str, Any]:
    """The public shape of `defs` as plain, sorted JSON data."""
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        deps = {}
        for parent in sorted(node.parent_keys, key=lambda k: k.to_user_string()):
            deps[parent.to_user_string()] = _mapping(node.partition_mappings.get(parent))
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "tags": {
                k: v for k, v in sorted(node.tags.items()) if not k.startswith("dagster/kind/")
            },
            "executable": node.is_executable,
            "partitions": _partitions(node.partitions_def),
            "backfill_policy": str(node.backfill_policy) if node.backfill_policy else None,
            "pools": sorted(node.pools or ()),
            "automation_condition": (
                node.automation_condition.get_label() or type(node.automation_condition).__name__
                if node.automation_condition
                else None
            ),
            "deps": deps,
            "checks": {
                ck.name: {
                    "blocking": graph.get(ck).blocking,
                    "partitioned": graph.get(ck).partitions_def is not None,
                    "deps": sorted(
                        p.to_user_string()
                        for p in graph.get(ck).parent_entity_keys
                        if isinstance(p, dg.AssetKey) and p != key
                    ),
                }
                for ck in sorted(node.check_keys, key=lambda c: c.name)
            },
        }
    return {
        "assets": assets,
        "schedules": sorted(s.name for s in defs.schedules or ()),
        "sensors": sorted(s.name for s in defs.sensors or ()),
        "jobs": sorted(j.name for j in defs.jobs or ()),
        "resources": sorted(defs.resources or {}),
    }


def _text(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def test_asset_graph_matches_snapshot(tmp_path):
    current = _text(render_graph(build_definitions(make_settings(tmp_path))))
    if os.environ.get(UPDATE_ENV) == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(current)
    expected = SNAPSHOT.read_text() if SNAPSHOT.exists() else ""
    diff = "".join(
        difflib.unified_diff(
            expected.splitlines(keepends=True),
            current.splitlines(keepends=True),
            fromfile=f"{SNAPSHOT.name} (committed)",
            tofile=f"{SNAPSHOT.name} (current definitions)",
        )
    )
    assert not diff, (
        "The public asset graph changed. If that is intended, regenerate and commit the "
        f"snapshot ({UPDATE_ENV}=1, see this module's docstring):\n{diff}"
    )

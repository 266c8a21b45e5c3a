"""Provision MarketFlow's Superset: admin account, dashboards bundle, saved chart queries.

Runs with Superset's own interpreter (`.venv-superset/bin/python bi/provision.py BUNDLE.zip`),
called by `python -m marketflow_assets.bi` after `superset db upgrade` and `superset init`.
The admin password comes in MARKETFLOW_BI_ADMIN_PASSWORD (never on the command line).

Idempotent: the admin is created once (its password reset only to the one given); the bundle's
objects carry stable UUIDs, so a re-import overwrites them instead of adding copies.
"""

from __future__ import annotations

import json
import os
import re
import sys
from zipfile import ZipFile

ADMIN = "admin"


def main(bundle_path: str) -> int:
    from superset.app import create_app

    app = create_app()
    with app.app_context():
        from flask import g
        from superset import db, security_manager
        from superset.commands.chart.importers.v1 import ImportChartsCommand
        from superset.commands.dashboard.importers.v1 import ImportDashboardsCommand
        from superset.commands.database.importers.v1 import ImportDatabasesCommand
        from superset.commands.dataset.importers.v1 import ImportDatasetsCommand
        from superset.commands.importers.v1.utils import get_contents_from_bundle
        from superset.models.dashboard import Dashboard
        from superset.models.slice import Slice
        from werkzeug.security import check_password_hash

        password = os.environ["MARKETFLOW_BI_ADMIN_PASSWORD"]
        user = security_manager.find_user(username=ADMIN)
        if user is None:
            role = security_manager.find_role("Admin")
            user = security_manager.add_user(
                ADMIN, "MarketFlow", "Admin", "admin@marketflow.local", role, password=password
            )
            if not user:
                print("could not create the Superset admin user", file=sys.stderr)
                return 1
            print(f"created Superset user {ADMIN!r}")
        elif not check_password_hash(user.password, password):
            security_manager.reset_password(user.id, password)
            print(f"reset the password of Superset user {ADMIN!r}")
        g.user = user

        with ZipFile(bundle_path) as bundle:
            contents = get_contents_from_bundle(bundle)
        # A dashboard import never overwrites the charts, datasets or database it brings along:
        # import each kind on its own with overwrite, so a changed bundle updates them in place.
        for command, model in (
            (ImportDatabasesCommand, "Database"),
            (ImportDatasetsCommand, "SqlaTable"),
            (ImportChartsCommand, "Slice"),
            (ImportDashboardsCommand, "Dashboard"),
        ):
            typed = dict(contents)
            typed["metadata.yaml"] = re.sub(
                r"(?m)^type: .*$", f"type: {model}", contents["metadata.yaml"]
            )
            command(typed, overwrite=True).run()

        # The bundle's saved queries (query_context) cannot know the dataset ids this instance
        # gives on import; point them at the chart's own dataset.
        uuids = {
            json_uuid
            for path, text in contents.items()
            if path.startswith(("charts/", "dashboards/"))
            for json_uuid in _uuids(text)
        }
        fixed = 0
        for chart in db.session.query(Slice).all():
            if str(chart.uuid) not in uuids or not chart.query_context:
                continue
            context = json.loads(chart.query_context)
            context["datasource"] = {"id": chart.datasource_id, "type": chart.datasource_type}
            context["form_data"]["datasource"] = f"{chart.datasource_id}__table"
            params = json.loads(chart.params)
            params["datasource"] = context["form_data"]["datasource"]
            chart.params = json.dumps(params)
            chart.query_context = json.dumps(context)
            fixed += 1
        for dashboard in db.session.query(Dashboard).all():
            if str(dashboard.uuid) in uuids:
                _scope_native_filters(dashboard)
        db.session.commit()
        print(f"imported {len(contents)} bundle files; {fixed} charts with saved queries")
    return 0


def _scope_native_filters(dashboard) -> None:
    """Point each native filter at the dashboard's charts it can filter: those whose dataset has
    the filter's column (a date range: those with a temporal column). The export format leaves
    `chartsInScope` to the instance, since it holds chart ids."""
    metadata = json.loads(dashboard.json_metadata or "{}")
    for native in metadata.get("native_filter_configuration", []):
        column = (native.get("targets") or [{}])[0].get("column", {}).get("name")
        in_scope = []
        for chart in dashboard.slices:
            columns = chart.datasource.columns
            if (column and any(c.column_name == column for c in columns)) or (
                not column and any(c.is_dttm for c in columns)
            ):
                in_scope.append(chart.id)
        native["chartsInScope"] = sorted(in_scope)
        native["tabsInScope"] = []
    dashboard.json_metadata = json.dumps(metadata)


def _uuids(yaml_text: str) -> list[str]:
    return [
        line.split(":", 1)[1].strip().strip("'\"")
        for line in yaml_text.splitlines()
        if line.startswith("uuid:")
    ]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

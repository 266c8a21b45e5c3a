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
import sys
from zipfile import ZipFile

ADMIN = "admin"


def main(bundle_path: str) -> int:
    from superset.app import create_app

    app = create_app()
    with app.app_context():
        from flask import g
        from superset import db, security_manager
        from superset.commands.dashboard.importers.dispatcher import ImportDashboardsCommand
        from superset.commands.importers.v1.utils import get_contents_from_bundle
        from superset.models.slice import Slice

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
        elif not security_manager.check_password(user.password, password):
            security_manager.reset_password(user.id, password)
            print(f"reset the password of Superset user {ADMIN!r}")
        g.user = user

        with ZipFile(bundle_path) as bundle:
            contents = get_contents_from_bundle(bundle)
        ImportDashboardsCommand(contents, overwrite=True).run()

        # The bundle's saved queries (query_context) cannot know the dataset ids this instance
        # gives on import; point them at the chart's own dataset.
        uuids = {
            json_uuid
            for path, text in contents.items()
            if path.startswith("charts/")
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
        db.session.commit()
        print(f"imported {len(contents)} bundle files; {fixed} charts with saved queries")
    return 0


def _uuids(yaml_text: str) -> list[str]:
    return [
        line.split(":", 1)[1].strip().strip("'\"")
        for line in yaml_text.splitlines()
        if line.startswith("uuid:")
    ]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

"""Compile MarketFlow's dashboards-as-code (`bi/`) into a Superset import bundle (v1 ZIP).

`bi/datasets.yaml` and `bi/dashboards/*.yaml` say what an analyst reviews: which table or SQL a
dataset reads, each chart's metrics, dimensions and filters, the layout and the native filters.
This module adds what Superset needs around that and nobody should write by hand:
- every dataset column with its type and description, from the table contracts
  (`marketflow_assets.serving.columns`); virtual datasets get their columns by binding their SQL
  against empty tables built from the same contracts;
- each chart's `params` (form data) and `query_context`;
- the dashboard layout (`position`) and native filter configuration;
- stable UUIDs derived from names, so re-importing updates objects instead of duplicating them.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import uuid
import zipfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import duckdb
import yaml

from marketflow_assets.bi.served import SERVED_TABLES
from marketflow_assets.serving.columns import ServedColumn, served_table

BI_DIR = Path(__file__).resolve().parents[2] / "bi"
DATABASE_NAME = "MarketFlow serving snapshot"
_NAMESPACE = uuid.UUID("5d0c1f4e-7a5b-4c1e-9a57-6d61726b6574")  # MarketFlow's UUID namespace
EXPORT_VERSION = "1.0.0"

# Compact viz names in bi/dashboards -> Superset viz types.
VIZ_TYPES = {
    "line": "echarts_timeseries_line",
    "bar": "echarts_timeseries_bar",
    "table": "table",
    "big_number": "big_number_total",
}
TIMESERIES = {"line", "bar"}


class BundleError(ValueError):
    """bi/ is inconsistent with the served tables or their contracts; the message says where."""


def stable_uuid(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def contract_ddl() -> list[str]:
    """CREATE statements for every served table, from the contracts (empty tables): the schema a
    virtual dataset or a chart expression must bind against."""
    statements = []
    for table in SERVED_TABLES:
        contract = served_table(table)
        cols = ", ".join(f'"{c.name}" {c.sql_type}' for c in contract.columns)
        statements += [
            f"CREATE SCHEMA IF NOT EXISTS {table.split('.')[0]}",
            f"CREATE TABLE {table} ({cols})",
        ]
    return statements


def contract_connection() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    for statement in contract_ddl():
        con.execute(statement)
    return con


@dataclass(frozen=True)
class Dataset:
    name: str
    time_column: str | None
    table: str | None = None
    sql: str | None = None
    columns_from: tuple[str, ...] = ()
    description: str | None = None

    @property
    def uuid(self) -> str:
        return stable_uuid("dataset", self.name)

    @property
    def source(self) -> str:
        """What a query selects FROM: the table, or the virtual dataset's SQL as a subquery."""
        return self.table if self.table else f"({self.sql.strip()}) AS {self.name}"

    def columns(self, con: duckdb.DuckDBPyConnection) -> list[ServedColumn]:
        """Every column with its contract type and description; KeyError/BundleError when one
        is not defined by a contract."""
        if self.table:
            if self.table not in SERVED_TABLES:
                raise BundleError(f"dataset {self.name}: {self.table} is not a served table")
            return list(served_table(self.table).columns)
        for table in self.columns_from:
            if table not in SERVED_TABLES:
                raise BundleError(f"dataset {self.name}: columns_from {table} is not served")
        try:
            described = con.execute(f"DESCRIBE {self.sql}").fetchall()
        except duckdb.Error as e:
            raise BundleError(f"dataset {self.name}: its SQL does not bind: {e}") from None
        contracts = [served_table(t) for t in self.columns_from]
        columns = []
        for name, *_ in described:
            match = next((c for t in contracts for c in t.columns if c.name == name), None)
            if match is None:
                raise BundleError(
                    f"dataset {self.name}: column {name!r} is defined by none of "
                    f"{', '.join(self.columns_from)}"
                )
            columns.append(match)
        return columns

    def export(self, con: duckdb.DuckDBPyConnection, database_uuid: str) -> dict[str, Any]:
        columns = self.columns(con)
        description = self.description or (
            served_table(self.table).description if self.table else None
        )
        return {
            "table_name": self.name,
            "main_dttm_col": self.time_column,
            "description": " ".join((description or "").split()) or None,
            "default_endpoint": None,
            "offset": 0,
            "cache_timeout": None,
            "schema": self.table.split(".")[0] if self.table else None,
            "sql": self.sql.strip() if self.sql else None,
            "params": None,
            "template_params": None,
            "filter_select_enabled": True,
            "fetch_values_predicate": None,
            "extra": None,
            "normalize_columns": False,
            "always_filter_main_dttm": False,
            "uuid": self.uuid,
            "metrics": [
                {
                    "metric_name": "count",
                    "verbose_name": "Rows",
                    "metric_type": "count",
                    "expression": "COUNT(*)",
                    "description": "Number of rows.",
                    "d3format": None,
                    "extra": None,
                    "warning_text": None,
                }
            ],
            "columns": [
                {
                    "column_name": c.name,
                    "verbose_name": None,
                    "is_dttm": c.is_temporal,
                    "is_active": True,
                    "type": c.sql_type,
                    "advanced_data_type": None,
                    "groupby": True,
                    "filterable": True,
                    "expression": None,
                    "description": c.description,
                    "python_date_format": None,
                    "extra": None,
                }
                for c in columns
            ],
            "version": EXPORT_VERSION,
            "database_uuid": database_uuid,
        }


@dataclass(frozen=True)
class Chart:
    """One chart of a dashboard, as written in bi/dashboards/*.yaml."""

    dashboard: str
    title: str
    viz: str
    dataset: Dataset
    width: int = 6
    height: int = 50
    x: str | None = None
    time_grain: str = "P1D"
    metrics: dict[str, str] = field(default_factory=dict)
    groupby: tuple[str, ...] = ()
    columns: tuple[str | dict[str, str], ...] = ()
    where: str | None = None
    order_by: tuple[tuple[str, bool], ...] = ()
    row_limit: int = 10_000
    annotations: dict[str, float] = field(default_factory=dict)
    number_format: str | None = None
    formats: dict[str, str] = field(default_factory=dict)  # table column/metric -> d3 format
    stacked: bool = False

    @property
    def uuid(self) -> str:
        return stable_uuid("chart", self.dashboard, self.title)

    @property
    def viz_type(self) -> str:
        return VIZ_TYPES[self.viz]

    @property
    def raw(self) -> bool:
        """A table listing rows (columns) rather than aggregating (metrics)."""
        return self.viz == "table" and bool(self.columns)

    def column_refs(self) -> list[str]:
        """Plain column names the chart uses (each must exist in its dataset)."""
        refs = [self.x] if self.x else []
        refs += list(self.groupby)
        refs += [c for c in self.columns if isinstance(c, str)]
        return refs

    def expressions(self) -> list[str]:
        """Every SQL expression of the chart, for binding checks."""
        exprs = list(self.metrics.values())
        exprs += [next(iter(c.values())) for c in self.columns if isinstance(c, dict)]
        return exprs

    def probe_sql(self) -> str:
        """One SELECT that uses every column and expression of the chart against its dataset:
        binding it against the contract schema catches a typo before Superset would."""
        selected = [f'"{c}"' for c in self.column_refs()] + [
            str(e) for e in self.expressions()
        ] or ["1"]
        aggregate = bool(self.metrics)
        group = [f'"{c}"' for c in ([self.x] if self.x else []) + list(self.groupby)]
        sql = f"SELECT {', '.join(selected)} FROM {self.dataset.source}"
        if self.where:
            sql += f" WHERE {self.where}"
        if aggregate and group:
            sql += f" GROUP BY {', '.join(group)}"
        return sql

    # -- Superset form data and query context -------------------------------------------------

    def _metric(self, label: str, expression: str) -> dict[str, Any]:
        return {
            "expressionType": "SQL",
            "sqlExpression": str(expression),
            "label": label,
            "hasCustomLabel": True,
            "optionName": f"metric_{_slug(label)}",
        }

    def _column(self, column: str | dict[str, str]) -> str | dict[str, Any]:
        if isinstance(column, str):
            return column
        label, expression = next(iter(column.items()))
        return {"expressionType": "SQL", "sqlExpression": str(expression), "label": label}

    def _adhoc_filters(self) -> list[dict[str, Any]]:
        filters = []
        time_column = self.x or self.dataset.time_column
        if time_column:
            filters.append(
                {
                    "clause": "WHERE",
                    "subject": time_column,
                    "operator": "TEMPORAL_RANGE",
                    "comparator": "No filter",
                    "expressionType": "SIMPLE",
                }
            )
        if self.where:
            filters.append(
                {
                    "clause": "WHERE",
                    "expressionType": "SQL",
                    "sqlExpression": self.where,
                    "filterOptionName": f"filter_{_slug(self.title)}",
                }
            )
        return filters

    def params(self, dataset_ref: str) -> dict[str, Any]:
        metrics = [self._metric(label, expr) for label, expr in self.metrics.items()]
        form: dict[str, Any] = {
            "datasource": dataset_ref,
            "viz_type": self.viz_type,
            "adhoc_filters": self._adhoc_filters(),
            "time_range": "No filter",
            "row_limit": self.row_limit,
            "extra_form_data": {},
            "dashboards": [],
        }
        if self.viz in TIMESERIES:
            form.update(
                x_axis=self.x,
                time_grain_sqla=self.time_grain,
                metrics=metrics,
                groupby=list(self.groupby),
                order_desc=True,
                truncate_metric=True,
                show_legend=True,
                legendType="scroll",
                legendOrientation="top",
                rich_tooltip=True,
                tooltipTimeFormat="smart_date",
                x_axis_time_format="smart_date",
                y_axis_format=self.number_format or "SMART_NUMBER",
                truncateYAxis=self.viz != "bar",
                y_axis_bounds=[None, None],
                zoomable=True,
                stack="Stack" if self.stacked else None,
                annotation_layers=[
                    {
                        "name": name,
                        "annotationType": "FORMULA",
                        "sourceType": "",
                        "value": str(value),
                        "overrides": {"time_range": None},
                        "show": True,
                        "showLabel": True,
                        "showMarkers": False,
                        "hideLine": False,
                        "style": "dashed",
                        "opacity": "",
                        "width": 1,
                        "color": None,
                        "titleColumn": "",
                        "descriptionColumns": [],
                        "timeColumn": "",
                        "intervalEndColumn": "",
                    }
                    for name, value in self.annotations.items()
                ],
            )
        elif self.viz == "table":
            form.update(
                query_mode="raw" if self.raw else "aggregate",
                all_columns=[self._column(c) for c in self.columns] if self.raw else [],
                groupby=[] if self.raw else list(self.groupby),
                metrics=[] if self.raw else metrics,
                order_by_cols=[json.dumps([c, asc]) for c, asc in self.order_by]
                if self.raw
                else [],
                timeseries_limit_metric=(
                    self._metric(*self._order_metric()) if not self.raw and self.order_by else None
                ),
                order_desc=not (self.order_by and self.order_by[0][1]),
                server_pagination=False,
                include_search=True,
                show_cell_bars=False,
                table_timestamp_format="%Y-%m-%d",
                column_config={name: {"d3NumberFormat": fmt} for name, fmt in self.formats.items()},
            )
        elif self.viz == "big_number":
            form.update(metric=metrics[0], header_font_size=0.4, subheader_font_size=0.15)
        if self.number_format and self.viz not in TIMESERIES:
            form["y_axis_format"] = self.number_format
        return form

    def _order_metric(self) -> tuple[str, str]:
        """A table in aggregate mode sorts by one of its metrics (by label) or by a column."""
        name, _ = self.order_by[0]
        if name in self.metrics:
            return name, self.metrics[name]
        return name, f"MAX({name})"

    def query_context(self, dataset_id: int, dataset_ref: str) -> dict[str, Any]:
        """The query Superset's frontend builds from `params` (its buildQuery), stored with the
        chart so the chart's data is reachable through the REST API (GET /chart/{id}/data)."""
        form = self.params(dataset_ref)
        time_column = self.x or self.dataset.time_column
        filters = (
            [{"col": time_column, "op": "TEMPORAL_RANGE", "val": "No filter"}]
            if time_column
            else []
        )
        where = f"({self.where})" if self.where else ""
        metrics = form.get("metrics") or ([form["metric"]] if "metric" in form else [])
        query: dict[str, Any] = {
            "filters": filters,
            "extras": {"having": "", "where": where},
            "applied_time_extras": {},
            "metrics": metrics,
            "annotation_layers": [],
            "row_limit": self.row_limit,
            "series_limit": 0,
            "order_desc": form.get("order_desc", True),
            "url_params": {},
            "custom_params": {},
            "custom_form_data": {},
        }
        if self.viz in TIMESERIES:
            query["columns"] = [
                {
                    "timeGrain": self.time_grain,
                    "columnType": "BASE_AXIS",
                    "sqlExpression": self.x,
                    "label": self.x,
                    "expressionType": "SQL",
                },
                *self.groupby,
            ]
            query["extras"]["time_grain_sqla"] = self.time_grain
            query["orderby"] = [[metrics[0], False]]
        elif self.raw:
            query["columns"] = form["all_columns"]
            query["metrics"] = []
            query["orderby"] = [[c, asc] for c, asc in self.order_by]
        else:
            query["columns"] = list(self.groupby)
            if self.order_by:
                query["orderby"] = [[form["timeseries_limit_metric"], self.order_by[0][1]]]
            elif metrics:
                query["orderby"] = [[metrics[0], False]]
        return {
            "datasource": {"id": dataset_id, "type": "table"},
            "force": False,
            "queries": [query],
            "form_data": form,
            "result_format": "json",
            "result_type": "full",
        }

    def export(self, dataset_id: int = 0) -> dict[str, Any]:
        ref = f"{dataset_id}__table"
        return {
            "slice_name": self.title,
            "description": None,
            "certified_by": None,
            "certification_details": None,
            "viz_type": self.viz_type,
            "params": self.params(ref),
            "query_context": json.dumps(self.query_context(dataset_id, ref)),
            "cache_timeout": None,
            "uuid": self.uuid,
            "version": EXPORT_VERSION,
            "dataset_uuid": self.dataset.uuid,
        }


@dataclass(frozen=True)
class NativeFilter:
    name: str
    type: str = "select"  # select | time_range
    column: str | None = None
    dataset: Dataset | None = None
    single: bool = False

    def export(self, dashboard: str) -> dict[str, Any]:
        base = {
            "id": f"NATIVE_FILTER-{stable_uuid('filter', dashboard, self.name)[:12]}",
            "name": self.name,
            "type": "NATIVE_FILTER",
            "description": "",
            "cascadeParentIds": [],
            "scope": {"rootPath": ["ROOT_ID"], "excluded": []},
            "defaultDataMask": {"extraFormData": {}, "filterState": {}, "ownState": {}},
        }
        if self.type == "time_range":
            return base | {
                "filterType": "filter_time",
                "targets": [{}],
                "controlValues": {},
            }
        return base | {
            "filterType": "filter_select",
            "targets": [{"datasetUuid": self.dataset.uuid, "column": {"name": self.column}}],
            "controlValues": {
                "enableEmptyFilter": self.single,
                "defaultToFirstItem": self.single,
                "multiSelect": not self.single,
                "searchAllOptions": False,
                "inverseSelection": False,
            },
            # Charts wait for the first value instead of loading unfiltered first.
            "requiredFirst": self.single,
            "sortAscending": True,
        }


@dataclass(frozen=True)
class Dashboard:
    title: str
    slug: str
    description: str
    filters: tuple[NativeFilter, ...]
    rows: tuple[tuple[Chart, ...], ...]

    @property
    def uuid(self) -> str:
        return stable_uuid("dashboard", self.slug)

    @property
    def charts(self) -> list[Chart]:
        return [c for row in self.rows for c in row]

    def position(self) -> dict[str, Any]:
        position: dict[str, Any] = {
            "DASHBOARD_VERSION_KEY": "v2",
            "ROOT_ID": {"children": ["GRID_ID"], "id": "ROOT_ID", "type": "ROOT"},
            "HEADER_ID": {"id": "HEADER_ID", "meta": {"text": self.title}, "type": "HEADER"},
            "GRID_ID": {"children": [], "id": "GRID_ID", "parents": ["ROOT_ID"], "type": "GRID"},
        }
        for r, row in enumerate(self.rows):
            row_id = f"ROW-{self.slug}-{r}"
            position["GRID_ID"]["children"].append(row_id)
            position[row_id] = {
                "children": [],
                "id": row_id,
                "meta": {"background": "BACKGROUND_TRANSPARENT"},
                "parents": ["ROOT_ID", "GRID_ID"],
                "type": "ROW",
            }
            for chart in row:
                chart_id = f"CHART-{chart.uuid[:10]}"
                position[row_id]["children"].append(chart_id)
                position[chart_id] = {
                    "children": [],
                    "id": chart_id,
                    "meta": {
                        "chartId": 0,
                        "height": chart.height,
                        "sliceName": chart.title,
                        "uuid": chart.uuid,
                        "width": chart.width,
                    },
                    "parents": ["ROOT_ID", "GRID_ID", row_id],
                    "type": "CHART",
                }
        return position

    def export(self) -> dict[str, Any]:
        return {
            "dashboard_title": self.title,
            "description": self.description,
            "css": "",
            "slug": self.slug,
            "certified_by": "",
            "certification_details": "",
            "published": True,
            "uuid": self.uuid,
            "position": self.position(),
            "metadata": {
                "native_filter_configuration": [f.export(self.slug) for f in self.filters],
                "chart_configuration": {},
                "global_chart_configuration": {
                    "scope": {"rootPath": ["ROOT_ID"], "excluded": []},
                    "chartsInScope": [],
                },
                "color_scheme": "supersetColors",
                "refresh_frequency": 0,
                "expanded_slices": {},
                "label_colors": {},
                "shared_label_colors": [],
                "timed_refresh_immune_slices": [],
                "cross_filters_enabled": True,
                "default_filters": "{}",
            },
            "version": EXPORT_VERSION,
        }


@dataclass(frozen=True)
class Bundle:
    datasets: dict[str, Dataset]
    dashboards: tuple[Dashboard, ...]

    @cached_property
    def charts(self) -> list[Chart]:
        return [c for d in self.dashboards for c in d.charts]

    def validate(self) -> None:
        """Every dataset reads served tables and contract columns only; every chart uses
        columns of its dataset and expressions that bind against the contract schema."""
        con = contract_connection()
        try:
            for dataset in self.datasets.values():
                dataset.columns(con)
            for chart in self.charts:
                names = {c.name for c in chart.dataset.columns(con)}
                for ref in chart.column_refs():
                    if ref not in names:
                        raise BundleError(
                            f"chart {chart.title!r} ({chart.dashboard}): column {ref!r} is not "
                            f"in dataset {chart.dataset.name}"
                        )
                labels = {*chart.metrics, *chart.column_refs()} | {
                    next(iter(c)) for c in chart.columns if isinstance(c, dict)
                }
                if unknown := set(chart.formats) - labels:
                    raise BundleError(
                        f"chart {chart.title!r} ({chart.dashboard}): formats for "
                        f"{sorted(unknown)}, which it does not show"
                    )
                for expression in [*chart.expressions(), chart.where or ""]:
                    if re.search(r"\bselect\b", str(expression), re.IGNORECASE):
                        raise BundleError(
                            f"chart {chart.title!r} ({chart.dashboard}): Superset refuses "
                            "sub-queries in chart SQL; put them in a virtual dataset"
                        )
                try:
                    con.execute(f"EXPLAIN {chart.probe_sql()}")
                except duckdb.Error as e:
                    raise BundleError(
                        f"chart {chart.title!r} ({chart.dashboard}) does not bind: {e}"
                    ) from None
            for dashboard in self.dashboards:
                for f in dashboard.filters:
                    if f.column and f.column not in {c.name for c in f.dataset.columns(con)}:
                        raise BundleError(
                            f"filter {f.name!r} ({dashboard.slug}): {f.dataset.name} has no "
                            f"column {f.column!r}"
                        )
        finally:
            con.close()

    def files(self, snapshot: Path) -> dict[str, str]:
        """The bundle's YAML files by path, for a database reading `snapshot`."""
        database_uuid = stable_uuid("database", "serving")
        con = contract_connection()
        try:
            files = {
                "metadata.yaml": {
                    "version": EXPORT_VERSION,
                    "type": "Dashboard",
                    "timestamp": dt.datetime.now(dt.UTC).isoformat(),
                },
                "databases/marketflow.yaml": database_export(snapshot, database_uuid),
            }
            for dataset in self.datasets.values():
                files[f"datasets/marketflow/{dataset.name}.yaml"] = dataset.export(
                    con, database_uuid
                )
        finally:
            con.close()
        for chart in self.charts:
            files[f"charts/{_slug(chart.dashboard)}_{_slug(chart.title)}.yaml"] = chart.export()
        for dashboard in self.dashboards:
            files[f"dashboards/{dashboard.slug}.yaml"] = dashboard.export()
        return {path: yaml.safe_dump(body, sort_keys=False) for path, body in files.items()}

    def zip_bytes(self, snapshot: Path) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for path, text in self.files(snapshot).items():
                zf.writestr(f"marketflow_dashboards/{path}", text)
        return buffer.getvalue()


def database_export(snapshot: Path, database_uuid: str) -> dict[str, Any]:
    """The serving snapshot as a Superset database: read-only DuckDB, opened per query (Superset
    uses a NullPool for query engines), so a newly published snapshot shows on the next query."""
    return {
        "database_name": DATABASE_NAME,
        # The stable path, never resolved: `current.duckdb` is a symlink the publisher switches.
        "sqlalchemy_uri": f"duckdb:///{snapshot.absolute()}",
        "cache_timeout": None,
        "expose_in_sqllab": True,
        "allow_run_async": False,
        "allow_ctas": False,
        "allow_cvas": False,
        "allow_dml": False,
        "allow_file_upload": False,
        "extra": {
            "engine_params": {"connect_args": {"read_only": True}},
            "metadata_params": {},
            "metadata_cache_timeout": {},
            "schemas_allowed_for_file_upload": [],
        },
        "uuid": database_uuid,
        "version": EXPORT_VERSION,
    }


def load_bundle(bi_dir: Path = BI_DIR) -> Bundle:
    """Read bi/datasets.yaml and bi/dashboards/*.yaml (in file-name order)."""
    spec = yaml.safe_load((bi_dir / "datasets.yaml").read_text())
    for d in spec["datasets"]:
        if d.get("table") and d["name"] != d["table"].split(".")[-1]:
            raise BundleError(
                f"bi/datasets.yaml: physical dataset {d['name']!r} must be named like its table "
                f"({d['table']}), as Superset names it"
            )
        if bool(d.get("table")) == bool(d.get("sql")):
            raise BundleError(f"bi/datasets.yaml: dataset {d['name']!r} needs a table or sql")
    datasets = {
        d["name"]: Dataset(
            name=d["name"],
            time_column=d.get("time_column"),
            table=d.get("table"),
            sql=d.get("sql"),
            columns_from=tuple(d.get("columns_from", ())),
            description=d.get("description"),
        )
        for d in spec["datasets"]
    }

    def dataset(name: str, where: str) -> Dataset:
        if name not in datasets:
            raise BundleError(f"{where}: unknown dataset {name!r} (bi/datasets.yaml)")
        return datasets[name]

    dashboards = []
    for path in sorted((bi_dir / "dashboards").glob("*.yaml")):
        d = yaml.safe_load(path.read_text())
        filters = tuple(
            NativeFilter(
                name=f["name"],
                type=f.get("type", "select"),
                column=f.get("column"),
                dataset=dataset(f["dataset"], f"{path.name} filter {f['name']}")
                if "dataset" in f
                else None,
                single=f.get("single", False),
            )
            for f in d.get("filters", [])
        )
        rows = tuple(
            tuple(
                Chart(
                    dashboard=d["title"],
                    title=c["title"],
                    viz=c["viz"],
                    dataset=dataset(c["dataset"], f"{path.name} chart {c['title']}"),
                    width=c.get("width", 6),
                    height=c.get("height", 50),
                    x=c.get("x"),
                    time_grain=c.get("time_grain", "P1D"),
                    metrics=c.get("metrics", {}),
                    groupby=tuple(c.get("groupby", ())),
                    columns=tuple(c.get("columns", ())),
                    where=c.get("where"),
                    order_by=tuple(tuple(o) for o in c.get("order_by", ())),
                    row_limit=c.get("row_limit", 10_000),
                    annotations=c.get("annotations", {}),
                    number_format=c.get("number_format"),
                    formats=c.get("formats", {}),
                    stacked=c.get("stacked", False),
                )
                for c in row
            )
            for row in d["rows"]
        )
        for row in rows:
            if sum(c.width for c in row) > 12:
                raise BundleError(f"{path.name}: a row is wider than Superset's 12 columns")
        dashboards.append(Dashboard(d["title"], d["slug"], d.get("description", ""), filters, rows))
    return Bundle(datasets, tuple(dashboards))

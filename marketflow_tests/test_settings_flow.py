"""Settings flow one way: `build_definitions(settings)` alone decides partitions and resources,
modules read nothing at import, and `$MARKETFLOW_HOME/settings.toml` sits under the environment."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import dagster as dg
import pytest

from marketflow_assets.definitions import build_definitions
from marketflow_assets.partitions import sessions_partitions_def
from marketflow_assets.settings import ConfigError, Settings
from marketflow_tests.helpers import make_settings


def partitions_of_everything(defs: dg.Definitions) -> list[tuple[str, dg.PartitionsDefinition]]:
    """(key, partitions) of every partitioned asset and check in `defs`."""
    graph = defs.resolve_asset_graph()
    found = [
        (key.to_user_string(), graph.get(key).partitions_def)
        for key in graph.get_all_asset_keys()
        if graph.get(key).partitions_def is not None
    ]
    for assets_def in [*defs.assets, *(defs.asset_checks or ())]:
        found += [
            (spec.key.to_user_string(), spec.partitions_def)
            for spec in assets_def.check_specs
            if spec.partitions_def is not None
        ]
    return found


def test_build_definitions_honours_a_non_default_start_date(tmp_path):
    late = build_definitions(make_settings(tmp_path / "a", start_date=dt.date(2024, 1, 2)))
    default = build_definitions(make_settings(tmp_path / "b"))  # same process, other settings

    found = partitions_of_everything(late)
    assert len({key for key, _ in found}) > 20  # assets and checks alike
    for key, partitions in found:
        assert partitions != sessions_partitions_def, f"{key} kept the declaration placeholder"
        assert partitions.get_first_partition_key() == "2024-01-02", key
    assert late.resolve_implicit_global_asset_job_def().partitions_def.get_partition_keys()[:2] == [
        "2024-01-02",
        "2024-01-03",
    ]
    assert {p.get_first_partition_key() for _, p in partitions_of_everything(default)} == {
        "2010-01-04"
    }


def test_a_start_date_that_is_no_session_fails_when_definitions_are_built(tmp_path):
    with pytest.raises(ValueError, match="MARKETFLOW_START_DATE=2024-01-01 is not an NYSE session"):
        build_definitions(make_settings(tmp_path, start_date=dt.date(2024, 1, 1)))


def test_asset_modules_read_no_settings_at_import(tmp_path):
    """Importing every asset, check and automation module succeeds whatever the environment says;
    only building the definitions reads settings (previously partitions.py raised at import)."""
    code = (
        "import importlib, pkgutil, marketflow_assets.assets as a, marketflow_assets.automation"
        " as m, marketflow_assets.checks as c\n"
        "for pkg in (a, m, c):\n"
        "    for info in pkgutil.iter_modules(pkg.__path__):\n"
        "        importlib.import_module(f'{pkg.__name__}.{info.name}')\n"
        "import marketflow_assets.partitions, marketflow_assets.resources\n"
        "print('imported')\n"
    )
    env = {
        **os.environ,
        "MARKETFLOW_HOME": str(tmp_path),
        "MARKETFLOW_START_DATE": "2024-01-01",  # not a session
        "MARKETFLOW_SOURCE": "bloomberg",  # not a source
    }
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and "imported" in done.stdout, done.stderr[-3000:]


# -- the settings file ---------------------------------------------------------------------------
def test_settings_file_is_read_under_the_environment(tmp_path):
    (tmp_path / "settings.toml").write_text(
        'source = "simulator"\nsimulator_seed = 3\ntickers = ["AAPL", "KO"]\n'
        "start_date = 2024-01-02\nsimulator_now = 2024-06-07T22:00:00Z\n"
    )
    home = {"MARKETFLOW_HOME": str(tmp_path)}
    from_file = Settings.from_env(home)
    assert (from_file.source, from_file.simulator_seed, from_file.tickers) == (
        "simulator",
        3,
        "AAPL,KO",
    )
    assert from_file.start_date == dt.date(2024, 1, 2)
    assert from_file.simulator_now == dt.datetime(2024, 6, 7, 22, tzinfo=dt.UTC)
    # A non-empty variable wins; a blank one does not hide the file.
    overridden = Settings.from_env(
        {**home, "MARKETFLOW_SIMULATOR_SEED": "5", "MARKETFLOW_SOURCE": "  "}
    )
    assert (overridden.source, overridden.simulator_seed) == ("simulator", 5)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('sorce = "simulator"\n', r"settings\.toml: unknown setting\(s\) sorce"),
        ('source = "bloomberg"\n', r"MARKETFLOW_SOURCE set in .*settings\.toml"),
        ('smtp_password = "x"\n', "secret; set MARKETFLOW_SMTP_PASSWORD in the environment"),
        ('home = "/elsewhere"\n', "cannot be set in the file it locates"),
        ("source = [simulator\n", r"settings\.toml: not valid TOML"),
        ("[source]\nname = 1\n", "`source` must be a string"),
    ],
)
def test_a_bad_settings_file_names_the_file_and_the_key(tmp_path, content, message):
    (tmp_path / "settings.toml").write_text(content)
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({"MARKETFLOW_HOME": str(tmp_path)})

from pathlib import Path

from marketflow_assets.contracts.docs import splice

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_table_reference_matches_the_contracts():
    text = README.read_text()
    assert splice(text) == text, "README tables are stale: run `make docs`"

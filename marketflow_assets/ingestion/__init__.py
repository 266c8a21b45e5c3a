"""File-drop ingestion: files dropped under the landing prefix, read, validated, claimed in
batches and landed in raw as source `file` (`landing.py`: bars, and the parsing of statement
files; `statement_drops.py`: landing statement files). The raw assets call it; the `file_drops`
sensor (`automation/file_drops.py`) only decides when."""

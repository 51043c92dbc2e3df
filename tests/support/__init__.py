"""What tests share that is not a fixture: importable helpers (`from support.waiting import
wait_until`). Fixtures live in the conftest.py files; helpers live here, so that no test ever
imports from a conftest module."""

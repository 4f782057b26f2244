import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("_regionsearch_conftest_store",
                                               Path(__file__).resolve().parents[1] / "conftest_store.py")
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
pg_database, pg_url, db_url = _mod.pg_database, _mod.pg_url, _mod.db_url

"""Database fixtures of the storage tests: a real SQLite file and a real PostgreSQL database.

One fresh PostgreSQL database per test session (``regionsearch_test_<random>``, dropped at the
end); each test gets its own schema in it. PostgreSQL unreachable: the tests skip locally but
fail on CI (``regionsearch.testing.ci``). Loaded by ``tests/store/conftest.py`` and ``tests/test_datadir.py``.
"""

from __future__ import annotations

import os
import uuid

import pytest

from regionsearch.testing.ci import unavailable

PG_DSN = os.environ.get("REGIONSEARCH_TEST_PG", "host=127.0.0.1 port=5432 user=postgres")
PG_URL_BASE = os.environ.get("REGIONSEARCH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")


def _unavailable(reason: str) -> None:
    unavailable(f"PostgreSQL not reachable: {reason} (bash .ci/services.sh starts it)")


@pytest.fixture(scope="session")
def pg_database():
    """Name of a fresh PostgreSQL database for this test session."""
    try:
        import psycopg
    except ImportError as exc:
        _unavailable(str(exc))
    name = f"regionsearch_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(PG_DSN + " dbname=postgres", autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        _unavailable(str(exc).strip())
    yield name
    from sqlalchemy import create_engine  # noqa: F401  (engines of the tests are disposed by now)

    with psycopg.connect(PG_DSN + " dbname=postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_database):
    """A SQLAlchemy URL of an empty schema of the session database (dropped after the test)."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN + f" dbname={pg_database}", autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield f"{PG_URL_BASE}/{pg_database}?options=-csearch_path%3D{schema}"
    with psycopg.connect(PG_DSN + f" dbname={pg_database}", autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """Database URL of each backend: a real SQLite file, then a real PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'metadata.sqlite'}"
    return request.getfixturevalue("pg_url")

"""The test PostgreSQL server works, and the SQL the write ledger relies on behaves the same on PostgreSQL
and SQLite.

What is pinned down here (SQLAlchemy 2 Core, psycopg 3 on PostgreSQL, pysqlite on SQLite):

* ``insert(...).on_conflict_do_update(index_elements=..., set_=..., where=<existing row>)
  .returning(table.c.key)`` executed with a LIST of parameter dicts inside one transaction is sent as
  one multi-row ``INSERT ... VALUES (...), (...) ... RETURNING`` per ``insertmanyvalues_page_size``
  rows ("insertmanyvalues"), and the result holds exactly the rows that were inserted or updated:
  a row whose conflict ``WHERE`` is false is neither changed nor returned. Count the returned keys;
  ``rowcount`` is not usable for this (-1 on psycopg, the last page's count on SQLite).
* ``returning(..., sort_by_parameter_order=True)`` is also correct, but on a table without an
  insert sentinel (a composite string primary key) SQLAlchemy then sends one statement per row.
  The ledger returns the key columns and matches on them instead.
* A key twice in one statement: PostgreSQL refuses the whole statement (CardinalityViolation,
  "ON CONFLICT DO UPDATE command cannot affect row a second time"); SQLite applies both, last wins.
  De-duplicate keys before a batch.
* The database clock, usable inside that ``WHERE``: ``db_epoch()`` below. PostgreSQL's
  ``clock_timestamp()`` advances inside a transaction (``now()`` is frozen at its start).
* Two connections racing on the same keys (PostgreSQL, READ COMMITTED): the second claimant waits
  on the first's uncommitted rows, then re-evaluates the conflict ``WHERE`` against the committed
  row, so exactly one wins each key; if the first rolls back, the second inserts. Claimants taking
  the same keys in different orders can deadlock (one is aborted): sort keys before claiming.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from tests.postgres import run_postgres

metadata = sa.MetaData()
leases = sa.Table(
    "leases",
    metadata,
    sa.Column("scope", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(64), nullable=True),
    sa.Column("expires", sa.Float, nullable=False),
)


def db_epoch(dialect_name: str) -> sa.ColumnElement[float]:
    """The database server's wall clock as Unix seconds (float), evaluated when the statement runs."""
    if dialect_name == "postgresql":
        return sa.cast(sa.extract("epoch", sa.func.clock_timestamp()), sa.Double)
    return (sa.func.julianday("now") - 2440587.5) * 86400.0


def claim_statement(dialect_name: str, *, sort_by_parameter_order: bool = False) -> sa.Insert:
    """Insert a lease, or take over an existing one that is free, expired or already ours."""
    stmt = (postgresql.insert if dialect_name == "postgresql" else sqlite.insert)(leases)
    return stmt.on_conflict_do_update(
        index_elements=[leases.c.scope, leases.c.key],
        set_={"owner": stmt.excluded.owner, "expires": stmt.excluded.expires},
        where=sa.or_(
            leases.c.owner.is_(None),
            leases.c.expires < db_epoch(dialect_name),
            leases.c.owner == stmt.excluded.owner,
        ),
    ).returning(leases.c.key, sort_by_parameter_order=sort_by_parameter_order)


def claim(conn: sa.Connection, keys: Sequence[str], owner: str, expires: float) -> list[str]:
    rows = [{"scope": "s", "key": k, "owner": owner, "expires": expires} for k in keys]
    return [r.key for r in conn.execute(claim_statement(conn.dialect.name), rows)]


def owners(conn: sa.Connection, scope: str = "s") -> dict[str, tuple[str | None, float]]:
    return {
        r.key: (r.owner, r.expires) for r in conn.execute(sa.select(leases).where(leases.c.scope == scope))
    }


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
    else:
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
    eng = sa.create_engine(url)
    metadata.create_all(eng)
    yield eng
    eng.dispose()


def count_statements(eng: sa.Engine) -> list[str]:
    seen: list[str] = []
    sa.event.listen(eng, "before_cursor_execute", lambda _c, _cur, statement, *_: seen.append(statement))
    return seen


# --- the server itself ---


def test_server_is_a_real_postgresql_on_loopback_tcp(postgres_server: str, pg_url: str) -> None:
    assert pg_url.startswith("postgresql+psycopg://")
    eng = sa.create_engine(pg_url)
    with eng.connect() as conn:
        version = int(conn.exec_driver_sql("SHOW server_version_num").scalar_one())
        assert version >= 160000
        assert conn.exec_driver_sql("SELECT host(inet_server_addr())").scalar_one() == "127.0.0.1"
        database = conn.exec_driver_sql("SELECT current_database()").scalar_one()
        assert database == sa.make_url(pg_url).database != sa.make_url(postgres_server).database
        assert (
            conn.exec_driver_sql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").scalar_one()
            == 0
        )
        data_dir = Path(conn.exec_driver_sql("SHOW data_directory").scalar_one())
    eng.dispose()
    # PostgreSQL refuses to run as root: as root the server runs as an unprivileged user
    assert data_dir.stat().st_uid != 0 or os.geteuid() != 0


def test_run_postgres_starts_fast_and_leaves_nothing_behind_even_on_error() -> None:
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="test failed"), run_postgres() as url:
        startup = time.monotonic() - started
        eng = sa.create_engine(url)
        conn = eng.connect()  # still connected at shutdown: the fast shutdown must not wait for it
        data_dir = Path(conn.exec_driver_sql("SHOW data_directory").scalar_one())
        postmaster = psutil.Process(int((data_dir / "postmaster.pid").read_text().split()[0]))
        server_processes = [postmaster, *postmaster.children(recursive=True)]
        assert len(server_processes) > 1
        raise RuntimeError("test failed")
    conn.invalidate()
    eng.dispose()
    print(f"PostgreSQL startup (initdb + start + first connection): {startup:.2f}s")
    assert startup < 15
    assert not data_dir.parent.exists()
    assert not [p for p in server_processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


# --- the ledger's SQL, on both backends ---


def test_upsert_returns_inserted_and_updated_rows_only(engine: sa.Engine) -> None:
    dialect = engine.dialect.name
    with engine.begin() as conn:
        now = conn.execute(sa.select(db_epoch(dialect))).scalar_one()
        conn.execute(
            leases.insert(),
            [
                {"scope": "s", "key": "free", "owner": None, "expires": 0.0},
                {"scope": "s", "key": "held", "owner": "other", "expires": now + 3600},
                {"scope": "s", "key": "expired", "owner": "other", "expires": now - 10},
                {"scope": "s", "key": "mine", "owner": "me", "expires": now + 5},
                {"scope": "other-scope", "key": "new", "owner": "other", "expires": now + 3600},
            ],
        )
    statements = count_statements(engine)
    with engine.begin() as conn:
        won = claim(conn, ["new", "free", "held", "expired", "mine"], "me", now + 60)
    assert sorted(won) == ["expired", "free", "mine", "new"]  # inserted, or updated by the DO UPDATE
    assert len(statements) == 1 and statements[0].count("), (") == 4  # one multi-row INSERT ... RETURNING

    with engine.connect() as conn:
        state = owners(conn)
        assert state["held"] == ("other", now + 3600)  # conflict WHERE false: untouched
        assert all(state[k] == ("me", now + 60) for k in won)
        assert owners(conn, "other-scope") == {"new": ("other", now + 3600)}  # same key, other scope
        assert conn.execute(sa.select(sa.func.count()).select_from(leases)).scalar_one() == 6


def test_upsert_returning_spans_insertmanyvalues_pages(engine: sa.Engine) -> None:
    eng = sa.create_engine(engine.url, insertmanyvalues_page_size=7)
    keys = [f"k{i:03d}" for i in range(40)]
    with eng.begin() as conn:
        claim(conn, keys[::3], "other", time.time() + 3600)
    statements = count_statements(eng)
    with eng.begin() as conn:
        won = claim(conn, keys, "me", time.time() + 60)
    eng.dispose()
    assert len(statements) == 6  # ceil(40 / 7) pages, results concatenated in one result
    assert sorted(won) == [k for i, k in enumerate(keys) if i % 3]


def test_sort_by_parameter_order_is_correct_but_row_at_a_time(engine: sa.Engine) -> None:
    dialect = engine.dialect.name
    with engine.begin() as conn:
        claim(conn, ["b"], "other", time.time() + 3600)
    statements = count_statements(engine)
    stmt = claim_statement(dialect, sort_by_parameter_order=True)
    with engine.begin() as conn:
        rows = conn.execute(
            stmt, [{"scope": "s", "key": k, "owner": "me", "expires": time.time() + 60} for k in "dbca"]
        ).all()
    assert [r.key for r in rows] == ["d", "c", "a"]  # parameter order; "b" (held) is filtered out
    assert len(statements) == 4  # no insert sentinel on this table: one INSERT per parameter set


def test_duplicate_key_in_one_statement(engine: sa.Engine) -> None:
    rows = [{"scope": "s", "key": "dup", "owner": o, "expires": 1.0} for o in ("first", "second")]
    if engine.dialect.name == "postgresql":
        with (
            pytest.raises(sa.exc.ProgrammingError, match="cannot affect row a second time"),
            engine.begin() as conn,
        ):
            conn.execute(claim_statement("postgresql"), rows)
        with engine.connect() as conn:
            assert owners(conn) == {}
    else:
        with engine.begin() as conn:
            assert [r.key for r in conn.execute(claim_statement("sqlite"), rows)] == ["dup", "dup"]
        with engine.connect() as conn:
            assert owners(conn) == {"dup": ("second", 1.0)}


def test_db_clock_epoch(engine: sa.Engine) -> None:
    dialect = engine.dialect.name
    with engine.begin() as conn:
        first = conn.execute(sa.select(db_epoch(dialect))).scalar_one()
        time.sleep(0.05)
        second = conn.execute(sa.select(db_epoch(dialect))).scalar_one()
        assert isinstance(first, float)
        assert abs(first - time.time()) < 5
        assert 0.03 < second - first < 5  # advances inside one transaction
        if dialect == "postgresql":  # unlike now(), the transaction's start time
            frozen = sa.cast(sa.extract("epoch", sa.func.now()), sa.Double)
            assert conn.execute(sa.select(frozen)).scalar_one() <= first

        # the conflict WHERE reads the clock when the statement runs, not when it was built
        conn.execute(
            leases.insert().values(scope="s", key="lease", owner="other", expires=db_epoch(dialect) + 0.3)
        )
        assert claim(conn, ["lease"], "me", 0.0) == []
        time.sleep(0.4)
        assert claim(conn, ["lease"], "me", 0.0) == ["lease"]


# --- two connections racing (PostgreSQL) ---


def _pg_engine(pg_url: str) -> sa.Engine:
    eng = sa.create_engine(pg_url, pool_size=4)
    metadata.create_all(eng)
    return eng


def _wait_until_blocked(eng: sa.Engine, pid: int) -> None:
    deadline = time.monotonic() + 10
    with eng.connect() as watcher:
        while time.monotonic() < deadline:
            wait = watcher.exec_driver_sql(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %(pid)s", {"pid": pid}
            ).scalar()
            if wait == "Lock":
                return
            watcher.rollback()
            time.sleep(0.01)
    raise AssertionError(f"backend {pid} never waited on a lock")


@pytest.mark.parametrize("first_outcome", ["commit", "rollback"])
def test_second_claimant_waits_for_the_first(pg_url: str, first_outcome: str) -> None:
    eng = _pg_engine(pg_url)
    result: dict[str, object] = {}
    with eng.connect() as b_conn:
        b_pid = b_conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        b_conn.rollback()

        def second() -> None:
            try:
                with b_conn.begin():
                    result["b"] = claim(b_conn, [f"k{i:02d}" for i in range(5, 15)], "b", time.time() + 60)
            except Exception as exc:  # pragma: no cover - reported below
                result["b"] = exc

        with eng.connect() as a_conn:
            a_tx = a_conn.begin()
            assert claim(a_conn, [f"k{i:02d}" for i in range(10)], "a", time.time() + 60) == [
                f"k{i:02d}" for i in range(10)
            ]
            thread = threading.Thread(target=second)
            thread.start()
            _wait_until_blocked(eng, b_pid)  # b waits on a's uncommitted k05 ...
            assert "b" not in result
            a_tx.commit() if first_outcome == "commit" else a_tx.rollback()
        thread.join(10)
        assert not thread.is_alive()
    if first_outcome == "commit":  # ... then re-checks the WHERE on a's committed rows: they are not free
        assert result["b"] == [f"k{i:02d}" for i in range(10, 15)]
        expected = {f"k{i:02d}": "a" if i < 10 else "b" for i in range(15)}
    else:  # ... or inserts them, a's rows having never existed
        assert result["b"] == [f"k{i:02d}" for i in range(5, 15)]
        expected = {f"k{i:02d}": "b" for i in range(5, 15)}
    with eng.connect() as conn:
        assert {k: owner for k, (owner, _) in owners(conn).items()} == expected
    eng.dispose()


def test_racing_claimants_each_key_won_exactly_once(pg_url: str) -> None:
    eng = _pg_engine(pg_url)
    keys = [f"k{i:03d}" for i in range(80)]
    wanted = {"a": keys[:60], "b": keys[20:]}  # both in the same (sorted) order: no deadlock

    def claimant(owner: str, keys: list[str], barrier: threading.Barrier, won: dict, errors: list) -> None:
        try:
            with eng.connect() as conn:
                conn.exec_driver_sql("SELECT 1").scalar_one()  # connected before the start line
                conn.rollback()
                barrier.wait(5)
                with conn.begin():
                    won[owner] = claim(conn, keys, owner, time.time() + 60)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    for round_ in range(5):
        won: dict[str, list[str]] = {}
        errors: list[BaseException] = []
        barrier = threading.Barrier(2)
        threads = [
            threading.Thread(
                target=claimant, args=(owner, [f"r{round_}-{k}" for k in ks], barrier, won, errors)
            )
            for owner, ks in wanted.items()
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert not errors
        assert not set(won["a"]) & set(won["b"])
        assert set(won["a"]) | set(won["b"]) == {f"r{round_}-{k}" for k in keys}
        with eng.connect() as conn:
            state = owners(conn)
        assert all(state[k][0] == owner for owner, ks in won.items() for k in ks)
    eng.dispose()


def test_claims_in_opposite_orders_can_deadlock(pg_url: str) -> None:
    """Why the ledger sorts keys: PostgreSQL aborts one of two claimants that lock keys crosswise."""
    eng = _pg_engine(pg_url)
    outcome: dict[str, object] = {}
    with eng.connect() as a_conn, eng.connect() as b_conn:
        for conn in (a_conn, b_conn):
            conn.exec_driver_sql("SET deadlock_timeout = '50ms'")  # default 1s
            conn.commit()
        b_pid = b_conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        b_conn.rollback()
        a_tx, b_tx = a_conn.begin(), b_conn.begin()
        claim(a_conn, ["x"], "a", time.time() + 60)
        claim(b_conn, ["y"], "b", time.time() + 60)

        def b_takes_x() -> None:
            try:
                outcome["b"] = claim(b_conn, ["x"], "b", time.time() + 60)
            except sa.exc.DBAPIError as exc:
                outcome["b"] = exc
                b_tx.rollback()  # releases y for a

        thread = threading.Thread(target=b_takes_x)
        thread.start()
        _wait_until_blocked(eng, b_pid)  # b waits for a's x; now a asks for b's y
        try:
            outcome["a"] = claim(a_conn, ["y"], "a", time.time() + 60)
            a_tx.commit()
        except sa.exc.DBAPIError as exc:
            outcome["a"] = exc
            a_tx.rollback()  # releases x for b
        thread.join(10)
        assert not thread.is_alive()
        if b_tx.is_active:
            b_tx.commit()
        errors = {who: v for who, v in outcome.items() if isinstance(v, sa.exc.DBAPIError)}
        assert len(errors) == 1, outcome
        [(loser, error)] = errors.items()
        assert error.orig.sqlstate == "40P01", error  # deadlock_detected
        winner = "b" if loser == "a" else "a"
        assert outcome[winner] == ["y" if winner == "a" else "x"]
        assert {k: owner for k, (owner, _) in owners(a_conn).items()} == {"x": winner, "y": winner}
    eng.dispose()

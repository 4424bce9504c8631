"""``trackstar-dagster suggest-mapping``: a CSV, Parquet file or DuckDB table and a write-info document (a file,
or fetched with a token read from an environment variable) -> the mapping YAML and the dry run's figures."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
import yaml
from trackstar_example.warehouse import seed_warehouse

from trackstar_dagster import MappingConfig
from trackstar_dagster.cli import main
from trackstar_dagster.sandbox.server import SandboxHandle

WRITE_INFO = Path(__file__).resolve().parents[2] / "trackstar_dagster" / "sandbox" / "data" / "write-info"


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("wh") / "warehouse.duckdb"
    seed_warehouse(path, days=10)
    with duckdb.connect(str(path)) as con:  # one customer's rows, as one connection takes them
        con.execute(
            "CREATE TABLE globex AS SELECT * EXCLUDE (customer) FROM order_lines WHERE customer = 'globex'"
        )
        con.execute(f"COPY globex TO '{path.parent / 'globex.csv'}' (HEADER)")
        con.execute(f"COPY globex TO '{path.parent / 'globex.parquet'}' (FORMAT parquet)")
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["suggest-mapping", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _check_proposal(text: str, connection: str = "shiphero") -> MappingConfig:
    config = MappingConfig.from_yaml(text)
    assert config.key == "order_id" and config.connection == connection
    assert config.fields["line_items.sku"] == "sku"
    assert config.fields["ship_to_address.postal_code"] == "ship_postal_code"
    assert "customer" not in config.fields.values()
    return config


@pytest.mark.parametrize("source", ["globex.csv", "globex.parquet", "duckdb"])
def test_a_file_or_a_duckdb_table_and_a_write_info_file(
    capsys: pytest.CaptureFixture[str], warehouse: Path, source: str
) -> None:
    args = (
        ["--duckdb", str(warehouse), "--table", "globex"]
        if source == "duckdb"
        else [str(warehouse.parent / source)]
    )
    code, out, err = _run(capsys, *args, "--write-info", str(WRITE_INFO / "shiphero.json"))
    assert code == 0, err
    _check_proposal(out)
    figures = [line for line in out.splitlines() if line.startswith("# dry run:")]
    assert len(figures) == 1 and " records valid " in figures[0]
    valid, records = (int(x) for x in figures[0].split(": ")[1].split(" records")[0].split(" of "))
    assert records > 0 and valid / records > 0.9


def test_output_file_and_the_component_section(
    capsys: pytest.CaptureFixture[str], warehouse: Path, tmp_path: Path
) -> None:
    target = tmp_path / "mapping.yaml"
    code, out, err = _run(
        capsys, "--duckdb", str(warehouse), "--table", "globex", "--write-info", str(WRITE_INFO / "shiphero.json"),
        "--connection", "globex_shiphero", "--output", str(target), "--section",
    )  # fmt: skip
    assert code == 0, err
    assert "dry run:" in out and "wrote" in out
    section = yaml.safe_load(target.read_text())["mapping"]
    assert MappingConfig.model_validate(section).connection == "globex_shiphero"


def test_fetched_from_the_api_with_the_token_from_the_environment_never_shown(
    capsys: pytest.CaptureFixture[str],
    warehouse: Path,
    sandbox: SandboxHandle,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MY_API_KEY", "sandbox-api-key")
    monkeypatch.setenv("GLOBEX_TOKEN", "sandbox-token-shiphero")
    code, out, err = _run(
        capsys, "--duckdb", str(warehouse), "--table", "globex", "--base-url", sandbox.base_url,
        "--integration", "shiphero", "--api-key-env", "MY_API_KEY", "--token-env", "GLOBEX_TOKEN",
    )  # fmt: skip
    assert code == 0, err
    _check_proposal(out)
    assert "sandbox-token-shiphero" not in out + err and "sandbox-api-key" not in out + err


def test_bad_input_is_a_clear_message(
    capsys: pytest.CaptureFixture[str], warehouse: Path, tmp_path: Path
) -> None:
    code, _, err = _run(
        capsys,
        "--duckdb",
        str(warehouse),
        "--table",
        "nope",
        "--write-info",
        str(WRITE_INFO / "shiphero.json"),
    )
    assert code == 2 and "nope" in err
    code, _, err = _run(
        capsys, str(tmp_path / "missing.csv"), "--write-info", str(WRITE_INFO / "shiphero.json")
    )
    assert code == 2 and "missing.csv" in err
    code, _, err = _run(capsys, "--duckdb", str(warehouse), "--table", "globex", "--base-url", "http://127.0.0.1:9",
                        "--integration", "shiphero", "--api-key-env", "UNSET_KEY_VAR_X")  # fmt: skip
    assert code == 2 and "UNSET_KEY_VAR_X" in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"paths": {}}))
    code, _, err = _run(capsys, "--duckdb", str(warehouse), "--table", "globex", "--write-info", str(bad))
    assert code == 2 and "create_order" in err
    with pytest.raises(SystemExit):  # a token is never an argument
        main(["suggest-mapping", "--duckdb", str(warehouse), "--table", "globex", "--token", "x"])

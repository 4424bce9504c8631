"""Hostile bodies over real HTTP: nesting depth, body size (Content-Length and chunked), bad write-info documents.

The limits are a documented contract (``app.py``'s docstring, the README), so they are spelled out here
rather than imported: 1 MiB for a data write, 4 MiB for an admin body, 64 levels of JSON nesting.
"""

from __future__ import annotations

import copy
import json
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.sandbox.helpers import SANDBOX_ORDER, WMS, body, client
from trackstar_dagster.sandbox.core import DATA_DIR
from trackstar_dagster.sandbox.server import SandboxHandle

MIB = 1024 * 1024
WRITE_LIMIT = MIB
ADMIN_LIMIT = 4 * MIB
MAX_DEPTH = 64
DOC_PATH = "/integrations/wms/wms_sandbox/write-info"


# -- helpers ---------------------------------------------------------------------------------------------
def _order_with_nested_tag(levels: int) -> str:
    """SANDBOX_ORDER whose first tag is ``{"k": {"k": ... "v"}}`` ``levels`` objects deep (the order itself is
    depth 1, ``trackstar_tags`` 2, so the body's depth is ``levels + 2``)."""
    return json.dumps(SANDBOX_ORDER).replace('"batch-1"', '{"k":' * levels + '"v"' + "}" * levels)


def _order_of_size(size: int) -> bytes:
    """A valid SANDBOX_ORDER body of exactly ``size`` bytes (padding in ``reference_id``)."""
    base = json.dumps(body(SANDBOX_ORDER, reference_id="")).encode()
    padded = json.dumps(body(SANDBOX_ORDER, reference_id="r" * (size - len(base)))).encode()
    assert len(padded) == size
    return padded


def _raw_request(
    sb: SandboxHandle,
    head: dict[str, str],
    parts: list[bytes],
    path: str = "/wms/orders",
    method: str = "POST",
    timeout: float = 5.0,
) -> tuple[int, dict[str, str], bytes]:
    """Send a request head and some body bytes on a raw socket (never finishing the body unless ``parts``
    does), then read one answer. A server that waits for the rest of the body times out here."""
    url = urlsplit(sb.base_url)
    headers = {
        "host": url.netloc,
        "x-trackstar-api-key": sb.api_key,
        "x-trackstar-access-token": WMS,
        "content-type": "application/json",
        **head,
    }
    with socket.create_connection((url.hostname, url.port), timeout=timeout) as s:
        s.sendall(
            f"{method} {path} HTTP/1.1\r\n".encode()
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
            + b"\r\n"
        )
        for part in parts:
            s.sendall(part)
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = s.recv(65536)
            assert data, f"connection closed without an answer: {buf!r}"
            buf += data
        raw_head, _, rest = buf.partition(b"\r\n\r\n")
        lines = raw_head.decode("latin-1").split("\r\n")
        got = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(got.get("content-length", "0"))
        while len(rest) < length:
            data = s.recv(65536)
            if not data:
                break
            rest += data
        return int(lines[0].split()[1]), got, rest[:length]


def _chunked(data: bytes, size: int = 64 * 1024) -> list[bytes]:
    """``data`` as HTTP/1.1 chunks, without the final zero-length chunk."""
    return [
        b"%x\r\n" % len(data[i : i + size]) + data[i : i + size] + b"\r\n" for i in range(0, len(data), size)
    ]


def _assert_413(status: int, payload: object) -> None:
    assert status == 413
    assert isinstance(payload, dict) and payload["origin"] == "trackstar"
    assert "1 MiB" in payload["error"] or "4 MiB" in payload["error"], payload


def _assert_healthy(sb: SandboxHandle, c: httpx.Client | None = None) -> None:
    """The server still answers: health, and a valid write stored (on ``c``'s connection when given)."""
    with httpx.Client(base_url=sb.base_url, timeout=10.0) as fresh:
        assert fresh.get("/_sandbox/health").json() == {"ok": True}
    if c is None:
        with client(sb) as own:
            r = own.post("/wms/orders", json=SANDBOX_ORDER)
    else:
        r = c.post("/wms/orders", json=SANDBOX_ORDER)
    assert r.status_code == 200, r.text


# -- 1. nesting depth ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw",
    [
        '{"a":' * 2000 + "1" + "}" * 2000,
        "[" * 2000 + "]" * 2000,
        _order_with_nested_tag(600),  # parses, validates and is stored today; then every read of it fails
        _order_with_nested_tag(MAX_DEPTH - 1),  # one level over
    ],
    ids=["objects-2000", "arrays-2000", "tag-602", "tag-65"],
)
def test_deeply_nested_body_is_a_422_and_the_server_keeps_serving(sandbox: SandboxHandle, raw: str) -> None:
    with client(sandbox) as c:
        r = c.post(
            "/wms/orders",
            content=raw,
            headers={"content-type": "application/json", "idempotency-key": "deep-1"},
        )
        assert r.status_code == 422, r.text[:300]
        got = r.json()
        assert got["error"] == "Validation failed" and got["origin"] == "trackstar"
        [message] = got["detail"]["json"]["_schema"]
        assert "nested" in message and str(MAX_DEPTH) in message
        assert sandbox.records("orders") == []
        _assert_healthy(sandbox, c)  # same keep-alive connection
        # the key was not bound to the refused body
        again = c.post("/wms/orders", json=SANDBOX_ORDER, headers={"idempotency-key": "deep-1"})
        assert again.status_code == 200 and "idempotent-replayed" not in again.headers
    assert len(sandbox.records("orders")) == 2


def test_nesting_at_the_limit_is_judged_as_usual(sandbox: SandboxHandle) -> None:
    with client(sandbox) as c:
        r = c.post(
            "/wms/orders",
            content=_order_with_nested_tag(MAX_DEPTH - 2),
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 200, r.text[:300]
        assert c.get(f"/wms/orders/{r.json()['id']}").status_code == 200
    assert len(sandbox.records("orders")) == 1


def test_deeply_nested_update_is_a_422(sandbox: SandboxHandle) -> None:
    with client(sandbox) as c:
        rid = c.post("/wms/orders", json=SANDBOX_ORDER).json()["id"]
        r = c.put(
            f"/wms/orders/{rid}",
            content="[" * 5000 + "]" * 5000,
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 422 and "nested" in r.json()["detail"]["json"]["_schema"][0]
        assert c.get(f"/wms/orders/{rid}").json()["data"]["reference_id"] == "ref-1"


# -- 2. body size ----------------------------------------------------------------------------------------
def test_body_at_the_limit_is_accepted_one_byte_more_is_413(sandbox: SandboxHandle) -> None:
    with client(sandbox) as c:
        assert (
            c.post(
                "/wms/orders",
                content=_order_of_size(WRITE_LIMIT),
                headers={"content-type": "application/json"},
            ).status_code
            == 200
        )
        r = c.post(
            "/wms/orders",
            content=_order_of_size(WRITE_LIMIT + 1),
            headers={"content-type": "application/json"},
        )
        _assert_413(r.status_code, r.json())
        assert "1 MiB" in r.json()["error"]
    assert len(sandbox.records("orders")) == 1


def test_20_mb_order_is_413_and_not_stored(sandbox: SandboxHandle) -> None:
    big = body(SANDBOX_ORDER, reference_id="x" * 20_000_000)
    with client(sandbox) as c:
        r = c.post("/wms/orders", json=big, headers={"idempotency-key": "big-1"})
        _assert_413(r.status_code, r.json())
        assert r.headers["x-request-id"]
        assert sandbox.records("orders") == []
        _assert_healthy(sandbox, c)
        assert (
            c.post("/wms/orders", json=SANDBOX_ORDER, headers={"idempotency-key": "big-1"}).status_code == 200
        )


def test_content_length_over_the_limit_is_answered_before_the_body_is_sent(sandbox: SandboxHandle) -> None:
    # 20 MB announced, 64 KiB sent: the answer must come without the rest (a server reading it all times out)
    status, headers, payload = _raw_request(
        sandbox, {"content-length": str(20_000_000)}, [b"{" + b" " * 65535]
    )
    _assert_413(status, json.loads(payload))
    assert headers["content-type"] == "application/json"
    assert sandbox.records("orders") == []
    _assert_healthy(sandbox)


def test_chunked_body_over_the_limit_is_413_while_reading(sandbox: SandboxHandle) -> None:
    # a chunked body that passes the limit and never ends: the answer must come once the limit is passed
    data = _order_of_size(WRITE_LIMIT + 128 * 1024)
    status, _, payload = _raw_request(sandbox, {"transfer-encoding": "chunked"}, _chunked(data))
    _assert_413(status, json.loads(payload))
    assert sandbox.records("orders") == []
    _assert_healthy(sandbox)


def test_chunked_body_with_httpx(sandbox: SandboxHandle) -> None:
    def stream(data: bytes) -> Iterator[bytes]:
        for i in range(0, len(data), 64 * 1024):
            yield data[i : i + 64 * 1024]

    with client(sandbox) as c:
        r = c.post(
            "/wms/orders",
            content=stream(_order_of_size(3 * WRITE_LIMIT)),
            headers={"content-type": "application/json"},
        )
        _assert_413(r.status_code, r.json())
        ok = c.post(
            "/wms/orders",
            content=stream(_order_of_size(WRITE_LIMIT)),
            headers={"content-type": "application/json"},
        )
        assert ok.status_code == 200, ok.text[:300]
        _assert_healthy(sandbox, c)
    assert len(sandbox.records("orders")) == 2


def test_admin_bodies_have_their_own_limit(sandbox: SandboxHandle) -> None:
    status, _, payload = _raw_request(
        sandbox,
        {"content-length": str(ADMIN_LIMIT + 1)},
        [b"{"],
        path="/_sandbox/write-info/wms_sandbox",
        method="PUT",
    )
    _assert_413(status, json.loads(payload))
    assert "4 MiB" in json.loads(payload)["error"]
    with client(sandbox, token=None) as c:
        r = c.post("/_sandbox/configure", content=b" " * (ADMIN_LIMIT + 1))
        _assert_413(r.status_code, r.json())
    _assert_healthy(sandbox)


# -- 3. PUT /_sandbox/write-info/{name} ------------------------------------------------------------------
def _shipped_doc() -> dict:
    return json.loads((DATA_DIR / "write-info" / "wms_sandbox.json").read_text())


def _doc_with(change: str) -> object:
    doc = _shipped_doc()
    if change == "request-body-list":
        doc["paths"]["/wms/orders"]["post"]["requestBody"] = []
    elif change == "missing-ref":
        doc["paths"]["/wms/orders"]["post"]["requestBody"]["content"]["application/json"]["schema"] = {
            "$ref": "#/components/schemas/Nope"
        }
    elif change == "bad-pattern":  # not a regular expression: every create_order would raise
        doc["components"]["schemas"]["CreatewmsOrder--WMS_Sandbox--"]["properties"]["order_number"][
            "pattern"
        ] = "("
    elif change == "bad-keyword":
        doc["components"]["schemas"]["CreatewmsOrder--WMS_Sandbox--"]["properties"]["order_number"][
            "minLength"
        ] = "x"
    elif change == "remote-ref":
        doc["components"]["schemas"]["CreatewmsOrder--WMS_Sandbox--"]["properties"]["order_number"] = {
            "$ref": "https://example.invalid/schema.json"
        }
    elif change == "schemas-list":
        doc["components"]["schemas"] = []
    elif change == "deep":  # parses (under Python's recursion limit), but is deeper than 64 levels
        node: dict = {}
        doc["components"]["x-deep"] = node
        for _ in range(100):
            node["a"] = node = {}
    return doc


BAD_DOCS = {
    "array": [1, 2],
    "empty-array": [],
    "string": "openapi",
    "no-paths": {"openapi": "3.1.0"},
    "paths-list": {"openapi": "3.1.0", "paths": []},
    "path-item-list": {"openapi": "3.1.0", "paths": {"/wms/orders": []}},
    **{
        name: _doc_with(name)
        for name in (
            "request-body-list",
            "missing-ref",
            "bad-pattern",
            "bad-keyword",
            "remote-ref",
            "schemas-list",
            "deep",
        )
    },
}


def _put(c: httpx.Client, content: bytes, name: str = "wms_sandbox") -> httpx.Response:
    return c.put(
        f"/_sandbox/write-info/{name}", content=content, headers={"content-type": "application/json"}
    )


def _assert_doc_kept_and_writes_work(c: httpx.Client, before: dict) -> None:
    assert c.get(DOC_PATH).json() == before
    r = c.post("/wms/orders", json=SANDBOX_ORDER)
    assert r.status_code == 200, r.text[:300]


@pytest.mark.parametrize(
    "raw",
    [b"{bad", b"", b"[1,", b"\xff\xfe", ('{"a":' * 3000 + "1" + "}" * 3000).encode()],
    ids=["malformed", "empty", "truncated", "not-utf8", "deep"],
)
def test_write_info_malformed_json_is_400_and_keeps_the_document(sandbox: SandboxHandle, raw: bytes) -> None:
    with client(sandbox) as c:
        before = c.get(DOC_PATH).json()
        r = _put(c, raw)
        assert r.status_code == 400, r.text[:300]
        assert r.json()["origin"] == "trackstar" and "JSON" in r.json()["error"]
        _assert_doc_kept_and_writes_work(c, before)


@pytest.mark.parametrize("name", list(BAD_DOCS))
def test_write_info_that_is_not_a_usable_document_is_400_and_keeps_the_document(
    sandbox: SandboxHandle, name: str
) -> None:
    with client(sandbox) as c:
        before = c.get(DOC_PATH).json()
        r = _put(c, json.dumps(BAD_DOCS[name]).encode())
        assert r.status_code == 400, (name, r.text[:300])
        got = r.json()
        assert got["origin"] == "trackstar" and "write-info" in got["error"], got
        _assert_doc_kept_and_writes_work(c, before)
        _assert_doc_kept_and_writes_work(c, before)  # not a one-off: every later write


def test_write_info_from_python_refuses_the_same_documents(sandbox: SandboxHandle) -> None:
    with client(sandbox) as c:
        before = c.get(DOC_PATH).json()
        for doc in (BAD_DOCS["array"], BAD_DOCS["no-paths"], BAD_DOCS["missing-ref"]):
            with pytest.raises(ValueError, match="write-info"):
                sandbox.set_write_info("wms_sandbox", doc)  # type: ignore[arg-type]
        _assert_doc_kept_and_writes_work(c, before)


def test_valid_write_info_still_works_and_writes_after_it(sandbox: SandboxHandle) -> None:
    doc = copy.deepcopy(_shipped_doc())
    order = doc["components"]["schemas"]["CreatewmsOrder--WMS_Sandbox--"]
    order["properties"]["priority"] = {"type": "string", "enum": ["low", "high"]}
    order["required"] = [*order["required"], "priority"]
    with client(sandbox) as c:
        assert _put(c, b"[1]").status_code == 400
        r = _put(c, json.dumps(doc).encode())
        assert r.status_code == 200 and r.json() == {"ok": True}
        assert (
            "priority"
            in c.get(DOC_PATH).json()["components"]["schemas"]["CreatewmsOrder--WMS_Sandbox--"]["properties"]
        )
        r = c.post("/wms/orders", json=SANDBOX_ORDER)
        assert r.status_code == 422 and "priority" in r.json()["detail"]["json"]
        assert c.post("/wms/orders", json=body(SANDBOX_ORDER, priority="high")).status_code == 200
        # a refused document after a good one keeps the good one
        assert _put(c, b'{"openapi": "3.1.0"}').status_code == 400
        assert c.post("/wms/orders", json=body(SANDBOX_ORDER, priority="low")).status_code == 200
    assert len(sandbox.records("orders")) == 2

"""The chshim test double (tests/chshim.py) through clickhouse-connect's real HTTP transport.

The shim runs as a subprocess (module-scoped), so this pytest process never opens a chdb path
(tests/clickhouse_engine.py opens one in-process). Each test gets its own database.
"""

from __future__ import annotations

import datetime as dt
import http.client
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
import lz4.frame
import pytest
from clickhouse_connect.driver.binding import MAX_URL_BIND_PARAM_LENGTH
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError
from clickhouse_connect.driver.external import ExternalData

from tests.chshim import start_process, stop_process

COMPRESSIONS = [False, "lz4", "zstd"]


@pytest.fixture(scope="module")
def shim_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    proc, port = start_process(tmp_path_factory.mktemp("chshim") / "data")
    try:
        yield port
    finally:
        assert stop_process(proc) == 0


def connect(port: int, compress: bool | str = False, **kw: Any) -> Client:
    return clickhouse_connect.get_client(host="127.0.0.1", port=port, compress=compress, **kw)


@pytest.fixture
def database(shim_port: int) -> Iterator[str]:
    name = "t_" + uuid.uuid4().hex[:12]
    admin = connect(shim_port)
    admin.command(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        admin.command(f"DROP DATABASE {name} SYNC")
        admin.close()


@pytest.fixture(params=COMPRESSIONS, ids=lambda c: f"compress={c}")
def client(request: pytest.FixtureRequest, shim_port: int, database: str) -> Iterator[Client]:
    c = connect(shim_port, request.param, database=database)
    yield c
    c.close()


@pytest.fixture
def admin(shim_port: int, database: str) -> Iterator[Client]:
    c = connect(shim_port, database=database)
    yield c
    c.close()


def test_ddl_and_command(client: Client) -> None:
    summary = client.command("CREATE TABLE t (a UInt64, s String) ENGINE = MergeTree ORDER BY a")
    assert not isinstance(summary, (str, int, list))  # no X-ClickHouse-Format: a summary
    assert client.command("EXISTS TABLE t") == 1
    assert client.command("SELECT 7, 'x'") == ["7", "x"]
    client.command("INSERT INTO t VALUES (1, 'one'), (2, 'two')")
    assert client.query("SELECT a, s FROM t ORDER BY a").result_rows == [(1, "one"), (2, "two")]
    assert client.query("SELECT name FROM system.tables WHERE database = currentDatabase()")
    client.command("DROP TABLE t")
    assert client.command("EXISTS TABLE t") == 0


def test_insert_100k_rows_in_chunks(client: Client) -> None:
    """Several insert blocks = several lz4 frames in one request body (the data-loss trap)."""
    client.command(
        "CREATE TABLE m (i UInt64, attrs Map(String, String), kind LowCardinality(String),"
        " ts DateTime64(3, 'UTC'), v Float64) ENGINE = MergeTree ORDER BY i"
    )
    n, t0 = 100_000, dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows = [
        (i, {"k": str(i % 97), "x": "y"}, f"kind{i % 5}", t0 + dt.timedelta(milliseconds=i), i / 4)
        for i in range(n)
    ]
    ctx = client.create_insert_context("m", ["i", "attrs", "kind", "ts", "v"])
    ctx.req_block_size = 12_500
    ctx.data = rows
    assert ctx.block_row_count == 12_500  # 8 blocks in one request
    assert client.data_insert(ctx).written_rows == n
    got = client.query(
        "SELECT count(), sum(i), sum(v), sum(toUInt64(attrs['k'])), sum(length(attrs)),"
        " sum(toUInt64(substring(kind, 5))), sum(toUnixTimestamp64Milli(ts)) FROM m"
    ).result_rows[0]
    t0_ms = int(t0.timestamp() * 1000)
    expected = (
        n,
        sum(range(n)),
        sum(i / 4 for i in range(n)),
        sum(i % 97 for i in range(n)),
        2 * n,
        sum(i % 5 for i in range(n)),
        sum(t0_ms + i for i in range(n)),
    )
    assert got == expected
    assert client.query("SELECT toTypeName(kind), toTypeName(ts) FROM m LIMIT 1").result_rows == [
        ("LowCardinality(String)", "DateTime64(3, 'UTC')")
    ]


def test_server_side_parameters(client: Client) -> None:
    q = "SELECT count() FROM numbers(100) WHERE number < {p:UInt64} AND {s:String} = 'it''s'"
    assert client.query(q, parameters={"p": 10, "s": "it's"}).result_rows == [(10,)]
    assert client.command("SELECT {a:UInt64} * 2", parameters={"a": 21}) == 42


def test_per_query_settings_applied_and_not_leaked(client: Client) -> None:
    many = "SELECT number FROM numbers(10)"
    with pytest.raises(DatabaseError) as err:
        client.query(many, settings={"max_result_rows": 3, "result_overflow_mode": "throw"})
    assert err.value.code == 396  # TOO_MANY_ROWS_OR_BYTES: the setting was applied
    assert len(client.query(many).result_rows) == 10
    get = "SELECT getSetting('max_block_size')"
    default = client.command(get)
    assert client.command(get, settings={"max_block_size": 99}) == 99
    assert client.command(get) == default
    client.command("SET max_block_size = 1234")  # the session's own SET persists ...
    assert client.command(get, settings={"max_block_size": 77}) == 77
    assert client.command(get) == 1234  # ... and is restored after a per-query setting


def test_settings_without_session(shim_port: int) -> None:
    c = connect(shim_port, autogenerate_session_id=False)
    try:
        get = "SELECT getSetting('max_block_size')"
        assert c.command(get, settings={"max_block_size": 99}) == 99
        assert c.command(get) != 99
    finally:
        c.close()


def test_engine_error_is_database_error_with_code(client: Client) -> None:
    with pytest.raises(DatabaseError) as err:
        client.query("SELECT * FROM no_such_table")
    assert err.value.code == 60
    assert "UNKNOWN_TABLE" in str(err.value)
    with pytest.raises(DatabaseError) as err:
        client.command("SELEC 1")
    assert err.value.code == 62
    assert client.command("SELECT 1") == 1  # the connection still works


def test_temporary_table_lives_in_the_clients_session(client: Client, shim_port: int) -> None:
    client.command("CREATE TEMPORARY TABLE tmp (a UInt8)")
    client.command("INSERT INTO tmp VALUES (1), (2), (3)")
    assert client.query("SELECT sum(a) FROM tmp").result_rows == [(6,)]
    other = connect(shim_port)
    try:
        with pytest.raises(DatabaseError) as err:
            other.query("SELECT * FROM tmp")
        assert err.value.code == 60
    finally:
        other.close()


def test_two_clients_insert_concurrently(admin: Client, shim_port: int, database: str) -> None:
    admin.command("CREATE TABLE c (who UInt8, i UInt32) ENGINE = MergeTree ORDER BY (who, i)")
    errors: list[BaseException] = []

    def work(who: int) -> None:
        c = connect(shim_port, "lz4" if who else False, database=database)
        try:
            for batch in range(20):
                c.insert("c", [(who, batch * 500 + i) for i in range(500)], ["who", "i"])
                c.query("SELECT count() FROM c WHERE who = {w:UInt8}", parameters={"w": who})
        except BaseException as ex:  # reported below
            errors.append(ex)
        finally:
            c.close()

    threads = [threading.Thread(target=work, args=(who,)) for who in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    got = admin.query("SELECT who, count(), uniqExact(i) FROM c GROUP BY who ORDER BY who")
    assert got.result_rows == [(0, 10_000, 10_000), (1, 10_000, 10_000)]


def record_multipart(client: Client, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """For each request `client` sends from now on: was its body multipart/form-data?"""
    http = client._backend.http  # type: ignore[attr-defined]  # urllib3 PoolManager
    sent: list[bool] = []
    real = http.request

    def request(method: str, url: str, **kw: Any) -> Any:
        sent.append(bool(kw.get("fields")))
        return real(method, url, **kw)

    monkeypatch.setattr(http, "request", request)
    return sent


def test_long_array_parameter_goes_multipart(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    ts = [1_767_225_600_000 + i * 60_000 - (i % 7) * 13 for i in range(2_000)]
    assert len(",".join(map(str, ts))) > MAX_URL_BIND_PARAM_LENGTH  # the client's form path
    sent = record_multipart(client, monkeypatch)
    got = client.query(
        "SELECT length({ts:Array(Int64)}), arraySum({ts:Array(Int64)}), {ts:Array(Int64)}[2000],"
        " {n:UInt8} FROM system.one",
        parameters={"ts": ts, "n": 7},
    )
    assert got.result_rows == [(2_000, sum(ts), ts[-1], 7)]
    assert sent == [True]
    rows = client.query("SELECT arrayJoin({ts:Array(Int64)})", parameters={"ts": ts})
    assert [r[0] for r in rows.result_rows] == ts


def test_long_string_parameter_round_trips_exactly(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    piece = "it's \\ a\ttab\r\n--boundary\r\n\r\nContent-Disposition: x; é€😀 \\N {s:String}\n"
    s = (piece * (10_240 // len(piece) + 1))[:10_240]
    sent = record_multipart(client, monkeypatch)
    got = client.query("SELECT {s:String}, length({s:String})", parameters={"s": s}).result_rows
    assert got == [(s, len(s.encode()))]
    assert sent == [True]


def test_form_encode_query_params_and_settings(shim_port: int, database: str) -> None:
    c = connect(shim_port, "lz4", database=database, form_encode_query_params=True)
    try:
        get = "SELECT getSetting('max_block_size'), {a:UInt64} * 2"
        assert c.query(get, parameters={"a": 21}, settings={"max_block_size": 99}).result_rows == [
            (99, 42)
        ]
        assert c.query(get, parameters={"a": 1}).result_rows[0][0] != 99  # not leaked
        assert c.query("SELECT {s:String}", parameters={"s": "x\ty"}).result_rows == [("x\ty",)]
    finally:
        c.close()


def test_external_data(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    ext = ExternalData(
        file_name="ext.csv",
        data=b'1,one\n2,two\n3,"th,ree"\n',
        fmt="CSV",
        structure="a UInt32, s String",
    )
    ext.add_file(file_name="pairs", data=b"10\t[1,2]\n20\t[3]\n", types=["UInt64", "Array(UInt8)"])
    sent = record_multipart(client, monkeypatch)
    got = client.query(
        "SELECT a, s, (SELECT sum(_1) + sum(length(_2)) FROM pairs) FROM ext ORDER BY a",
        external_data=ext,
    )
    assert got.result_rows == [(1, "one", 33), (2, "two", 33), (3, "th,ree", 33)]
    big = list(range(1_500))  # a long parameter too: the query itself moves into the form
    q = "SELECT count(), sum(a) FROM ext WHERE has({big:Array(UInt32)}, a)"
    assert client.query(q, parameters={"big": big}, external_data=ext).result_rows == [(3, 6)]
    assert sent == [True, True]
    assert client.command("EXISTS TEMPORARY TABLE ext") == 0  # per query, not per session
    with pytest.raises(DatabaseError) as err:
        client.query("SELECT * FROM ext")
    assert err.value.code == 60


def multipart(boundary: str, parts: list[tuple[str, bytes]]) -> bytes:
    """A hand-made body: (Content-Disposition parameters, content) per part."""
    head = b"--" + boundary.encode() + b"\r\nContent-Disposition: form-data; "
    out = [head + d.encode() + b"\r\n\r\n" + content + b"\r\n" for d, content in parts]
    return b"".join(out) + b"--" + boundary.encode() + b"--\r\n"


def test_raw_multipart_fields_files_and_errors(shim_port: int, database: str) -> None:
    boundary = "b0und4ry"
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    value = "a\r\n--b0und4\rz\n\r\n"
    blob = b"x--b0und4ry\x00\xff\r\n\r\n--b0und4r\r\n\r"  # all but CRLF--b0und4ry
    body = multipart(boundary, [
        ('name="query"', b"SELECT {v:String}, getSetting('date_time_input_format'),\r\n"
                         b" getSetting('max_block_size'), sum(_1), any(_2),\r\n"
                         b" (SELECT hex(b) FROM blob) FROM t FORMAT TSV"),
        ('name="param_v"', value.replace("\r", "\\r").replace("\n", "\\n").encode()),
        ('name="date_time_input_format"', b"best_effort_us"),  # a setting, though it ends _format
        ('name="max_block_size"', b"77"),
        ('name="t_format"', b"CSV"),
        ('name="t_types"', b"UInt8,String"),
        ('name="t"; filename="t.csv"', b"1,\"p\"\r\n2,\"p\"\r\n"),
        ('name="blob"; filename="blob.bin"', blob),
        ('name="blob_structure"', b"b String"),
        ('name="blob_format"', b"RawBLOB"),
    ])  # fmt: skip
    status, _, data = raw(shim_port, "POST", f"/?database={database}", body, headers)
    assert status == 200, data
    assert (
        data
        == b"a\\r\\n--b0und4\\rz\\n\\r\\n\tbest_effort_us\t77\t3\tp\t%s\n"
        % blob.hex().upper().encode()
    )
    no_structure = multipart(boundary, [('name="t"; filename="t"', b"1\n")])
    target = f"/?database={database}&query=SELECT%20count()%20FROM%20t"
    status, headers_, data = raw(shim_port, "POST", target, no_structure, headers)
    assert (status, headers_["X-ClickHouse-Exception-Code"]) == (400, "36")
    assert b"t_structure or t_types" in data
    status, _, data = raw(
        shim_port, "POST", target + "&t_structure=a%20UInt8", no_structure, headers
    )
    assert (status, data) == (200, b"1\n")
    status, _, _ = raw(shim_port, "POST", "/", b"--b0und4ry\r\nno end", headers)
    assert status == 400


CLIENT_PROCESS = """
import sys, clickhouse_connect
port, database, who = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
c = clickhouse_connect.get_client(host="127.0.0.1", port=port, database=database, compress="lz4")
for batch in range(10):
    c.insert("p", [(who, batch * 1000 + i) for i in range(1000)], ["who", "i"])
print(c.command("SELECT count() FROM p WHERE who = {w:UInt8}", parameters={"w": who}))
"""


def test_two_client_processes_share_the_engine(
    admin: Client, shim_port: int, database: str
) -> None:
    admin.command("CREATE TABLE p (who UInt8, i UInt32) ENGINE = MergeTree ORDER BY (who, i)")
    args = [sys.executable, "-c", CLIENT_PROCESS, str(shim_port), database]
    procs = [subprocess.Popen([*args, str(who)], stdout=subprocess.PIPE) for who in (1, 2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert [int(o.split()[-1]) for o in outs] == [10_000, 10_000]
    got = admin.query("SELECT who, count(), uniqExact(i) FROM p GROUP BY who ORDER BY who")
    assert got.result_rows == [(1, 10_000, 10_000), (2, 10_000, 10_000)]


def raw(port: int, method: str, target: str, body: Any = None, headers: Any = None) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, target, body, headers or {}, encode_chunked=not isinstance(body, bytes))
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, resp.headers, data


def test_raw_http_interface(shim_port: int, database: str) -> None:
    assert raw(shim_port, "GET", "/ping")[2] == b"Ok.\n"
    status, headers, data = raw(shim_port, "GET", "/?query=SELECT%201%2B1")
    assert (status, data, headers["X-ClickHouse-Format"]) == (200, b"2\n", "TabSeparated")
    assert headers["X-ClickHouse-Timezone"] and headers["X-ClickHouse-Query-Id"]
    db = {"X-ClickHouse-Database": database}
    status, headers, _ = raw(shim_port, "POST", "/", b"CREATE TABLE r (a UInt8) ENGINE=Log", db)
    assert status == 200 and "X-ClickHouse-Format" not in headers
    assert (
        raw(shim_port, "POST", "/", b"SELECT currentDatabase()", db)[2] == f"{database}\n".encode()
    )
    _, headers, data = raw(
        shim_port, "POST", f"/?default_format=CSV&database={database}", b"SHOW TABLES"
    )
    assert (data, headers["X-ClickHouse-Format"]) == (b'"r"\n', "CSV")
    status, headers, data = raw(shim_port, "POST", f"/?database={database}", b"SELECT * FROM nope")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (404, "60")
    assert data.startswith(b"Code: 60. DB::Exception:")


def test_raw_chunked_multiframe_lz4_insert_and_compressed_response(
    shim_port: int, database: str
) -> None:
    raw(shim_port, "POST", f"/?database={database}", b"CREATE TABLE r (a UInt32) ENGINE=Log")
    frames = [
        lz4.frame.compress(b"".join(b"%d\n" % i for i in range(k, k + 1000)))
        for k in (0, 1000, 2000)
    ]
    query = f"/?database={database}&query=INSERT%20INTO%20r%20FORMAT%20TSV"
    status, headers, _ = raw(shim_port, "POST", query, iter(frames), {"Content-Encoding": "lz4"})
    assert status == 200
    assert '"written_rows": "3000"' in headers["X-ClickHouse-Summary"]
    q = f"/?database={database}&enable_http_compression=1"
    _, headers, data = raw(
        shim_port, "POST", q, b"SELECT count(), sum(a) FROM r", {"Accept-Encoding": "lz4"}
    )
    assert headers["Content-Encoding"] == "lz4"
    assert lz4.frame.decompress(data) == b"3000\t4498500\n"


IN_PROCESS = """
import sys, clickhouse_connect
from tests.chshim import serve, stop
server, port = serve(sys.argv[1])
c = clickhouse_connect.get_client(host="127.0.0.1", port=port, compress="lz4")
print(c.command("SELECT sum(number) FROM numbers(1000)"))
c.close()
stop(server)
print("stopped")
"""


def test_in_process_serve_and_stop(tmp_path: Path) -> None:
    """serve()/stop() run in a child process: they would bind this process's chdb path."""
    root = Path(__file__).resolve().parent.parent
    args = [sys.executable, "-c", IN_PROCESS, str(tmp_path / "data")]
    out = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["499500", "stopped"]


def test_standalone_process_keeps_data_across_restart(tmp_path: Path) -> None:
    path = tmp_path / "data"
    proc, port = start_process(path)
    try:
        c = connect(port, "lz4")
        c.command("CREATE TABLE keep (a UInt32) ENGINE = MergeTree ORDER BY a")
        c.insert("keep", [(i,) for i in range(1000)], ["a"])
        c.close()
    finally:
        assert stop_process(proc) == 0
    with pytest.raises(OSError):
        raw(port, "GET", "/ping")
    proc, port = start_process(path)
    try:
        c = connect(port)
        assert c.query("SELECT count(), sum(a) FROM keep").result_rows == [(1000, 499500)]
        c.close()
    finally:
        assert stop_process(proc) == 0

"""Every decoder and parser, fuzzed briefly: each input decodes or raises a UserError.

The targets are in tests/fuzz_targets.py. Here each runs under hypothesis, derandomized and
without an example database so that every run of `make test` tries the same inputs: random
bytes, and the target's seeds (tests/fuzz_seeds.py) mutated by byte edits, splices and tokens
that parsers treat specially. bench/fuzz.py runs the same targets for minutes, coverage-guided
under atheris. Each finding's exact input is kept in tests/fuzz_regressions/<target>/ and
replayed by `test_regression`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from opsmetrics.errors import ConfigError
from opsmetrics.query.promql.engine import parse_expr
from opsmetrics.query.promql.values import QueryError
from tests.fuzz_seeds import TOKENS
from tests.fuzz_targets import TARGETS, FuzzEnv, check

REGRESSIONS = Path(__file__).parent / "fuzz_regressions"

#: Targets slower than about 5 ms an input get fewer examples, so the file stays near a minute.
EXAMPLES = {"kpi_alerts_file": 40, "kpis_file": 80, "dashboards_file": 80, "promql": 150}
DEFAULT_EXAMPLES = 250


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed after a few edits: insert, delete, overwrite, a token, or a copied slice."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.integers(0, 4))
        if op == 0:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == 1:
            del data[at : at + draw(st.integers(1, 16))]
        elif op == 2 and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif op == 3:
            data[at:at] = draw(st.sampled_from(TOKENS))
        else:
            start = draw(st.integers(0, len(data)))
            data[at:at] = data[start : start + draw(st.integers(1, 64))]
    return bytes(data)


#: Openers that parsers recurse on: deep nesting crashed PyYAML, the PromQL parser (SIGSEGV)
#: and the template parser before they were bounded.
OPENERS = [b"(", b"[", b"{", b"- ", b"1+", b"{{(", b"{{ if 1 }}", b"a:\n ", b"-"]


def nested() -> st.SearchStrategy[bytes]:
    """An opener repeated up to 12,000 times (10,000 crashed the PromQL parser), sometimes
    closed again."""
    return st.builds(
        lambda opener, n, closer: opener * n + b"1" + closer * n,
        st.sampled_from(OPENERS),
        st.integers(1, 12_000),
        st.sampled_from([b"", b")", b"]", b"}"]),
    )


def inputs(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    if not seeds:
        return st.one_of(st.binary(max_size=1024), nested())
    return st.one_of(st.binary(max_size=256), st.sampled_from(seeds), mutated(seeds), nested())


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> FuzzEnv:
    return FuzzEnv(tmp_path_factory.mktemp("fuzz"))


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz(name: str, env: FuzzEnv) -> None:
    target = TARGETS[name]

    @settings(
        max_examples=EXAMPLES.get(name, DEFAULT_EXAMPLES),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(inputs(target.seeds()))
    def run(data: bytes) -> None:
        note(f"input bytes: {data!r}")
        check(target, env, data)

    run()


def regression_cases() -> list[tuple[str, Path]]:
    if not REGRESSIONS.is_dir():
        return []
    return [
        (folder.name, path)
        for folder in sorted(REGRESSIONS.iterdir())
        if folder.is_dir()
        for path in sorted(folder.iterdir())
        if path.is_file()
    ]


def test_regression_folders_name_targets() -> None:
    unknown = {name for name, _ in regression_cases()} - set(TARGETS)
    assert not unknown, f"tests/fuzz_regressions has folders for no target: {unknown}"


@pytest.mark.parametrize(
    ("name", "path"), regression_cases(), ids=[f"{n}/{p.name}" for n, p in regression_cases()]
)
def test_regression(name: str, path: Path, env: FuzzEnv) -> None:
    """A past finding's exact bytes: now decoded or refused with a UserError."""
    check(TARGETS[name], env, path.read_bytes())


def test_the_invariant_lets_only_user_errors_through(env: FuzzEnv) -> None:
    """check() itself: a refusal passes, a crash of any other type is reported."""
    check(TARGETS["samples_json"], env, b"{")  # malformed JSON: a BadDataError
    with pytest.raises(ZeroDivisionError):
        check(TARGETS["samples_json"].__class__("x", lambda e, d: 1 / 0, list, ""), env, b"")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("alias-bomb.yaml", "aliases (*name) expand this document to more than 100,000"),
        ("nested-3000.yaml", "nested more than 64 levels deep"),
    ],
)
def test_hostile_yaml_is_refused_with_the_reason(name: str, message: str, env: FuzzEnv) -> None:
    """Not only no crash: a 300-byte alias bomb took minutes to validate before it was
    refused up front, so the refusal itself is what is pinned."""
    data = (REGRESSIONS / "retention_file" / name).read_bytes()
    with pytest.raises(ConfigError) as refused:
        TARGETS["retention_file"].run(env, data)
    assert message in refused.value.message
    assert re.search(r"retention\.yaml:\d+: \(document\):", refused.value.message)


def test_a_yaml_alias_to_its_own_anchor_is_refused(env: FuzzEnv) -> None:
    with pytest.raises(ConfigError, match="retention.yaml:1: .*refers to its own anchor"):
        TARGETS["retention_file"].run(env, b"a: &a [*a]\n")


def test_promql_too_deep_for_the_parser_is_refused_before_parsing(env: FuzzEnv) -> None:
    """10,000 nested parentheses made the Rust parser overflow its stack: SIGSEGV, the whole
    process gone. tests/test_api_schema.py sends it to a real server too."""
    with pytest.raises(QueryError, match="nests 10000 levels deep"):
        parse_expr("(" * 10_000 + "1" + ")" * 10_000)
    assert parse_expr("(" * 100 + "1" + ")" * 100) is not None

"""Hostile and malformed cuts: every one raises ExprError (never another exception, never
hangs), and the message names the offending part."""

from __future__ import annotations

import time

import pyarrow as pa
import pytest

from arrowroot.flight_server.lang.cuts import MAX_DEPTH, ExprError, parse

SCHEMA = pa.schema([
    ("nMuon", pa.uint32()),
    ("MET_pt", pa.float32()),
    ("Muon_pt", pa.list_(pa.float32())),
    ("Muon_eta", pa.list_(pa.float32())),
    ("Jet_pt", pa.large_list(pa.float64())),
    ("dataset", pa.string()),
    ("flag", pa.bool_()),
    ("when", pa.timestamp("us")),
    ("nested", pa.list_(pa.list_(pa.float64()))),
    ("dup", pa.int32()),
    ("dup", pa.int64()),
])

# (expression, a fragment the message must contain, the snippet the error must point at or None)
HOSTILE: list[tuple[str, str, str | None]] = [
    ("__import__('os').system('x')", "attribute access", "__import__('os').system"),
    ("__import__('os')", "'__'", "__import__"),
    ("().__class__.__bases__[0].__subclasses__()", "attribute access", None),
    ("Muon_pt.__class__", "attribute access", "Muon_pt.__class__"),
    ("MET_pt.real > 1", "attribute access", "MET_pt.real"),
    ("open('/etc/passwd')", "unknown function 'open'", "open"),
    ("eval('1')", "unknown function 'eval'", "eval"),
    ("exec('import os')", "unknown function 'exec'", "exec"),
    ("compile('1', 'f', 'eval')", "unknown function 'compile'", "compile"),
    ("getattr(MET_pt, 'real')", "unknown function 'getattr'", "getattr"),
    ("globals()", "unknown function 'globals'", "globals"),
    ("lambda: 1", "lambda", "lambda: 1"),
    ("(lambda x: x)(1) > 0", "only named functions", "lambda x: x"),
    ("[x for x in y]", "comprehension", "[x for x in y]"),
    ("any(x > 1 for x in Muon_pt)", "generator", "(x > 1 for x in Muon_pt)"),
    ("{k: 1 for k in nMuon}", "comprehension", None),
    ("nMuon := 3", "syntax error", None),
    ("(nMuon := 3) > 1", ":=", "nMuon := 3"),
    ("f'{nMuon}' == 'x'", "f-strings", "f'"),
    ("dataset == f'{MET_pt.__class__}'", "f-strings", "f'"),
    ("dataset == b'x'", "prefixes", "b'"),
    ("dataset == '''x'''", "triple-quoted", "'''"),
    ("dataset == 'x", "unterminated", "'x"),
    ("abs(x=1) > 0", "keyword arguments", "x=1"),
    ("abs(**{'x': 1}) > 0", "**kwargs", None),
    ("abs(*Muon_pt) > 0", "starred", "*Muon_pt"),
    ("{1: 2}", "dict literals", "{1: 2}"),
    ("nMuon in {1, 2}", "literal list", "{1, 2}"),
    ("{1, 2}", "set literals", "{1, 2}"),
    ("Muon_pt[1:2] > 0", "slices", "1:2"),
    ("Muon_pt[::2][0] > 0", "slices", "::2"),
    ("Muon_pt[0, 1] > 0", "multi-dimensional", "0, 1"),
    ("Muon_pt[nMuon] > 0", "integer literal", "nMuon"),
    ("Muon_pt[0.5] > 0", "integer literal", "0.5"),
    ("Muon_pt[MET_pt > 1] > 0", "boolean list", "MET_pt > 1"),
    ("MET_pt[0] > 1", "indexing needs a list", "MET_pt[0]"),
    ("Muon_pt > 'a'", "cannot compare", "Muon_pt > 'a'"),
    ("nMuon > 'a'", "cannot compare", "nMuon > 'a'"),
    ("dataset + 'x' == 'y'", "arithmetic", "dataset"),
    ("dataset > 'a'", "only == !=", "dataset > 'a'"),
    ("dataset in [1, 2]", "cannot test", "1"),
    ("nMuon in ['a']", "cannot test", "'a'"),
    ("nMuon in [MET_pt]", "only literals", "MET_pt"),
    ("nMuon in MET_pt", "literal list", "MET_pt"),
    ("Muon_pt > 20", "any(Muon_pt > 20)", "Muon_pt > 20"),
    ("nMuon > 1 and Muon_eta < 2", "any(Muon_eta < 2)", "Muon_eta < 2"),
    ("not (Muon_pt > 20)", "any(", "Muon_pt > 20"),
    ("nMuo > 1", "did you mean 'nMuon'", "nMuo"),
    ("MET_Pt > 40", "did you mean 'MET_pt'", "MET_Pt"),
    ("`Muon pt` > 1", "unknown column 'Muon pt'", "`Muon pt`"),
    ("frobnicate(MET_pt) > 1", "allowed functions: abs", "frobnicate"),
    ("absolute(MET_pt) > 1", "did you mean abs", "absolute"),
    ("sum(nMuon) > 1", "reduces a list", "sum(nMuon)"),
    ("any(MET_pt > 1)", "reduces a list", "any(MET_pt > 1)"),
    ("any(Muon_pt)", "boolean list", "any(Muon_pt)"),
    ("min(MET_pt, 3) > 1", "minimum(a, b)", "min(MET_pt, 3)"),
    ("sqrt() > 1", "takes 1 argument", "sqrt()"),
    ("where(MET_pt, 1, 2) > 0", "booleans", "MET_pt"),
    ("sqrt(dataset) > 1", "needs numbers", "dataset"),
    ("abs > 1", "is a function", "abs"),
    ("MET_pt", "must be a boolean", "MET_pt"),
    ("nMuon + 1", "must be a boolean", "nMuon + 1"),
    ("sum(Muon_pt)", "must be a boolean", "sum(Muon_pt)"),
    ("'a'", "must be a boolean", "'a'"),
    ("9**9**9**9", "must be a boolean", "9**9**9**9"),
    ("nMuon > 1 & MET_pt < 3", "binds tighter", "1"),
    ("~nMuon", "'~' needs a boolean", "~nMuon"),
    ("not MET_pt", "'not' needs a boolean", "not MET_pt"),
    ("nMuon // 2 > 1", "operator // is not supported", "nMuon // 2"),
    ("nMuon << 2 > 1", "operator << is not supported", "nMuon << 2"),
    ("nMuon ^ 2 > 1", "operator ^ is not supported", "nMuon ^ 2"),
    ("MET_pt if flag else 0", "where(c, a, b)", None),
    ("flag is True", "'is'", None),
    ("nMuon > 1 in [1]", "chained", None),
    ("nMuon > None", "None", "None"),
    ("nMuon > ...", "...", "..."),
    ("nMuon > 1j", "complex", "1j"),
    ("nMuon > 99999999999999999999", "int64", "99999999999999999999"),
    ("nMuon > -99999999999999999999", "int64", "99999999999999999999"),
    ("MET_pt < 1e999", "float64", "1e999"),
    ("when > 1", "which cuts cannot use", "when"),
    ("any(nested > 1)", "which cuts cannot use", "nested"),
    ("dup > 1", "ambiguous", "dup"),
    ("`` > 1", "empty backquoted", "``"),
    ("`Muon_pt > 1", "unterminated backquoted", "`Muon_pt > 1"),
    ("nMuon > 1 \\\n and flag", "backslash", None),
    ("", "empty", None),
    ("   ", "empty", None),
    ("nMuon >", "syntax error", None),
    ("nMuon > 1)", "syntax error", None),
    ("(nMuon > 1", "syntax error", None),
    ("nMuon > 1; import os", "syntax error", None),
    ("import os", "syntax error", None),
    ("yield 1", "syntax error", None),
    ("await x", "await", None),
    ("nMuon\x00 > 1", "NUL", None),
    ("[1, 2]", "only allowed after 'in'", "[1, 2]"),
    ("(1, 2)", "only allowed after 'in'", "(1, 2)"),
    ("any(Muon_pt > Jet_pt[0:1])", "slices", "0:1"),
    ("Muon_pt.sum() > 1", "attribute access", "Muon_pt.sum"),
    ("__builtins__", "'__'", "__builtins__"),
    ("nMuon.__add__(1) > 1", "attribute access", None),
    ("type(nMuon) > 1", "unknown function 'type'", "type"),
    ("max(Muon_pt, key=abs) > 1", "keyword arguments", "key=abs"),
]


@pytest.mark.parametrize("text,fragment,snippet", HOSTILE)
def test_hostile_expression_is_rejected(text: str, fragment: str, snippet: str | None) -> None:
    with pytest.raises(ExprError) as info:
        parse(text, SCHEMA)
    err = info.value
    assert fragment in str(err), str(err)
    if snippet is not None:
        assert err.snippet == snippet, str(err)
        assert err.position is not None and text[err.position:].startswith(snippet), str(err)


def test_there_are_at_least_forty() -> None:
    assert len(HOSTILE) >= 40


def test_positions_are_character_offsets_into_the_original_text() -> None:
    # backquoted names and non-ASCII strings before the error do not shift the position
    text = "`Jet pt` != 1 or dataset == 'ünïcödé' or Muon_pt.__class__"
    schema = pa.schema([("Jet pt", pa.float64()), ("dataset", pa.string()), ("Muon_pt", pa.list_(pa.float64()))])
    with pytest.raises(ExprError) as info:
        parse(text, schema)
    assert info.value.position == text.index("Muon_pt.__class__")
    assert info.value.snippet == "Muon_pt.__class__"
    with pytest.raises(ExprError) as info:
        parse("  `Jet pt` > 1 and nope > 2", schema)
    assert info.value.position == len("  `Jet pt` > 1 and ")
    assert info.value.snippet == "nope"
    with pytest.raises(ExprError) as info:
        parse("dataset == 'é' and `Jet pt` > 'x'", schema)
    assert info.value.snippet == "`Jet pt` > 'x'"


def _rejected_quickly(text: str, fragment: str, limit: float = 2.0) -> None:
    t0 = time.perf_counter()
    with pytest.raises(ExprError) as info:
        parse(text, SCHEMA)
    assert time.perf_counter() - t0 < limit
    assert fragment in str(info.value), str(info.value)[:300]


def test_deep_parentheses() -> None:
    _rejected_quickly("(" * 100_000 + "1" + ")" * 100_000, "characters long")
    _rejected_quickly("(" * 4000 + "flag" + ")" * 4000, "nested deeper")
    _rejected_quickly("(" * (MAX_DEPTH + 1) + "flag" + ")" * (MAX_DEPTH + 1), "nested deeper")
    _rejected_quickly("[" * 200 + "]" * 200, "nested deeper")
    _rejected_quickly("abs(" * 200 + "1" + ")" * 200 + " > 0", "nested deeper")
    # just inside the limit is fine
    parse("(" * (MAX_DEPTH - 2) + "flag" + ")" * (MAX_DEPTH - 2), SCHEMA)


def test_long_operator_chains() -> None:
    _rejected_quickly("1 + " * 100_000 + "1", "characters long")
    _rejected_quickly("1 + " * 2400 + "1 > 0", "")
    _rejected_quickly("-" * 9000 + "1 > 0", "")
    _rejected_quickly("not " * 2400 + "flag", "nested deeper")
    _rejected_quickly("~" * 9000 + "flag", "")
    _rejected_quickly("2 ** " * 2000 + "2 > 1", "")
    _rejected_quickly(" and ".join(["flag"] * 1000) + " and", "syntax error")
    # a long but flat and/or chain is fine (BoolOp is flat)
    assert parse(" and ".join(["flag"] * 1000), SCHEMA).columns == frozenset({"flag"})


def test_huge_literals() -> None:
    _rejected_quickly("dataset == '" + "x" * 1_000_000 + "'", "characters long")
    _rejected_quickly("dataset == '" + "x" * 1001 + "'", "longer than 1000")
    _rejected_quickly("nMuon > " + "9" * 5000, "")
    _rejected_quickly("nMuon in [" + ", ".join(["1"] * 10_001) + "]", "characters long")
    parse("dataset == '" + "x" * 1000 + "'", SCHEMA)


def test_power_towers_do_not_hang() -> None:
    t0 = time.perf_counter()
    cut = parse("9**9**9**9 > 1 and nMuon ** 99999 >= 0 and 10 ** 400 > 1", SCHEMA)
    b = pa.record_batch({"nMuon": pa.array([0, 1, 2], pa.uint32())})
    assert cut.mask(b).to_pylist() == [True, True, True]
    assert time.perf_counter() - t0 < 2.0


def test_every_error_is_a_value_error() -> None:
    for text, _, _ in HOSTILE:
        try:
            parse(text, SCHEMA)
        except ValueError:
            pass


def test_non_string_input() -> None:
    with pytest.raises(ExprError):
        parse(b"nMuon > 1", SCHEMA)  # type: ignore[arg-type]
    with pytest.raises(ExprError):
        parse(None, SCHEMA)  # type: ignore[arg-type]
    with pytest.raises(ExprError):
        parse("nMuon > 1", {"nMuon": int})  # type: ignore[arg-type]

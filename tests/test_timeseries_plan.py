"""Time → entry ranges (pure functions of the recorded ``timeseries`` attributes): mid-sample
starts and stops, gaps, overlaps, empty and outside ranges, ISO-8601 and GPS conversions."""

from __future__ import annotations

import pyarrow as pa
import pytest

from arrowroot.flight_server.core.timeranges import (
    Gap, Piece, combine, gps_to_utc, members_of, parse_iso, plan_time, time_values, to_scale, utc_to_gps,
)
from arrowroot.flight_server.sources.timeseries import record


def rec(t0: float, count: int, rate: float = 16.0, scale: str = "gps") -> dict:
    return record("test", "X1:TEST", scale, t0, rate, count, "m", "float64")


def test_single_member_mid_sample():
    members = [("a.h5", rec(100.0, 160))]                   # 10 s at 16 Hz
    plan = plan_time(members, 101.01, 102.0)                 # starts between samples 16 and 17
    assert plan.parts == (Piece(0, 17, 32, 100 + 17 / 16, round((100 + 17 / 16) * 1e9)),)
    assert plan_time(members, 101.0, 102.0).parts[0].start == 16          # on a sample: included
    assert plan_time(members, 101.0, 102.01).parts[0].stop == 33          # stop mid-sample: rounds up
    assert plan_time(members, 101.0, 101.0).parts == ()                   # empty range
    assert plan_time(members, None, None).rows == 160


def test_consecutive_ranges_tile_the_samples():
    members = [("a.h5", rec(100.0, 160))]
    cuts = [100.0, 100.33, 101.7, 104.0, 108.99, 110.0]
    pieces = [plan_time(members, a, b).parts[0] for a, b in zip(cuts, cuts[1:])]
    assert [(p.start, p.stop) for p in pieces] == [(0, 6), (6, 28), (28, 64), (64, 144), (144, 160)]


def test_files_in_time_order_with_a_gap():
    members = [("b.h5", rec(110.0, 160)), ("a.h5", rec(100.0, 160)), ("c.h5", rec(125.0, 80))]
    plan = plan_time(members, 105.0, 127.0)
    kinds = [type(p).__name__ for p in plan.parts]
    assert kinds == ["Piece", "Piece", "Gap", "Piece"]
    a, b, gap, c = plan.parts
    assert (a.member, a.start, a.stop) == (0, 80, 160)         # members sorted: a, b, c
    assert (b.member, b.start, b.stop) == (1, 0, 160)
    assert (gap.start, gap.stop, gap.samples, gap.between) == (120.0, 125.0, 80, True)
    assert (c.member, c.start, c.stop) == (2, 0, 32)
    assert plan.rows == 80 + 160 + 32 and plan.rows_with_fill() == plan.rows + 80


def test_outside_coverage_is_an_empty_read_with_gaps():
    members = [("a.h5", rec(100.0, 160))]
    before = plan_time(members, 50.0, 60.0)
    assert before.rows == 0 and [g.as_dict() for g in before.gaps] == [{"start": 50.0, "stop": 60.0,
                                                                        "samples": 160, "between": False}]
    after = plan_time(members, 109.5, 112.0)
    assert after.rows == 8 and [(g.start, g.stop, g.samples) for g in after.gaps] == [(110.0, 112.0, 32)]


def test_overlap_and_rate_mismatch_name_the_files():
    with pytest.raises(ValueError, match=r"a\.h5 .* and b\.h5 .* overlap"):
        plan_time([("a.h5", rec(100.0, 160)), ("b.h5", rec(109.0, 160))], None, None)
    with pytest.raises(ValueError, match=r"b\.h5 samples at 32.0 Hz"):
        plan_time([("a.h5", rec(100.0, 160)), ("b.h5", rec(110.0, 160, rate=32.0))], None, None)
    with pytest.raises(ValueError, match="before time_start"):
        plan_time([("a.h5", rec(100.0, 160))], 105.0, 101.0)
    # touching files (within half a sample) are neither a gap nor an overlap
    plan = plan_time([("a.h5", rec(100.0, 160)), ("b.h5", rec(110.0 + 0.01, 160))], None, None)
    assert plan.gaps == [] and plan.rows == 320


@pytest.mark.slow
def test_leap_seconds_match_gwpy():
    time = pytest.importorskip("gwpy.time")
    for iso in ("2015-09-14T09:50:45.4", "1999-01-01T00:00:00", "2017-01-01T00:00:00", "2026-12-01T12:00:00",
                "1980-01-06T00:00:00", "2016-12-31T23:59:59"):
        assert utc_to_gps(parse_iso(iso)) == pytest.approx(float(time.to_gps(iso)), abs=1e-6), iso
    assert gps_to_utc(utc_to_gps(1442224245.4)) == pytest.approx(1442224245.4)
    assert to_scale("2015-09-14T09:50:45.4Z", "gps") == pytest.approx(1126259462.4)
    assert to_scale("2026-01-01T00:00:00.123456789+00:00", "utc") == pytest.approx(1767225600.123456789)
    assert to_scale("2026-01-01T01:00:00+01:00", "utc") == 1767225600.0
    assert to_scale(1126259462.5, "gps") == 1126259462.5


@pytest.mark.parametrize("bad", ["yesterday", "2015-13-01", "", "2015-09-14T09:50:45.4Q" * 5])
def test_bad_iso_is_a_value_error(bad):
    with pytest.raises(ValueError, match="ISO-8601"):
        to_scale(bad, "gps")


def test_time_values():
    g = time_values(0, 100.0, 16.0, 4, "gps")
    assert g.type == pa.float64() and g.to_pylist() == [100.0, 100.0625, 100.125, 100.1875]
    u = time_values(1767225600 * 10**9, 1767225600.0, 4.0, 3, "utc")
    assert u.type == pa.timestamp("ns", tz="UTC")
    assert [v.value for v in u] == [1767225600 * 10**9 + k * 250_000_000 for k in range(3)]
    assert isinstance(plan_time([("a", rec(0.0, 4))], 10.0, 11.0).parts[0], Gap)


def test_combine_members_and_plan_from_the_summary():
    recs = [rec(100.0, 160), rec(110.0, 160), rec(130.0, 16)]
    summary = combine(recs)
    assert (summary["t0"], summary["t_end"], summary["count"], summary["rate"]) == (100.0, 131.0, 336, 16.0)
    members = members_of(summary)
    assert [m["t_end"] for m in members] == [110.0, 120.0, 131.0]
    plan = plan_time(list(zip(["a", "b", "c"], members)), 119.0, 131.0)
    assert [(type(p).__name__, getattr(p, "samples", None)) for p in plan.parts] == [
        ("Piece", None), ("Gap", 160), ("Piece", None)]
    assert combine([recs[0], None]) is None
    assert combine([recs[0], {"convention": "lh5", "layout": "waveforms"}]) is None


def test_dq_expressions_are_set_operations_never_python():
    from arrowroot.flight_server.core.segments import mask_segments
    from arrowroot.flight_server.lang.dq import dq_segments
    import numpy as np
    flags = {"DATA": [(0.0, 10.0)], "CAT1": [(0.0, 2.0), (3.0, 10.0)], "INJ": [(5.0, 6.0)]}
    assert dq_segments("DATA & CAT1", flags, 0, 10) == [(0.0, 2.0), (3.0, 10.0)]
    assert dq_segments("DATA and not CAT1", flags, 0, 10) == [(2.0, 3.0)]
    assert dq_segments("(CAT1 | INJ) & ~INJ", flags, 1, 8) == [(1.0, 2.0), (3.0, 5.0), (6.0, 8.0)]
    assert dq_segments("!DATA", flags, 0, 10) == []
    for bad, message in (("DATA &", "at the end"), ("DATA CAT1", "unexpected 'CAT1'"), ("(DATA", "not closed"),
                         ("__import__", "unknown flag '__import__'"),
                         ("__import__('os')", "unexpected"), ("DATA; 1", "unexpected ';"),
                         ("", "empty"), ("~" * 40 + "DATA", "nested deeper"), ("DATA & NOPE", "unknown flag")):
        with pytest.raises(ValueError, match=message):
            dq_segments(bad, flags, 0, 10)
    bits = mask_segments(np.array([3, 3, 1, 3, 0, 2]), 100.0, 1.0, 2)
    assert bits == {0: [[100.0, 104.0]], 1: [[100.0, 102.0], [103.0, 104.0], [105.0, 106.0]]}

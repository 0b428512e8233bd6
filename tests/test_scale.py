"""Linear scale: the indexes that replaced per-item passes (routes against the table, labctl's
dhcpd.conf blocks) answer exactly what a plain pass answers, and the work grows linearly with
the input (timed at two sizes in the same run: a quadratic cost would grow 16x for 4x the
input, a linear one 4x).  scripts/bench reports the whole commands at 2,000 routes and 10,000
blocks."""

from __future__ import annotations

import ipaddress
import re
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from labctl.hypervisor.vmware import dhcpd
from labctl.hypervisor.vmware.dhcpd import BEGIN_TAG, END_TAG, DhcpdConf
from labctl.hypervisor.vmware.lab import render_dhcpd_conf
from labctl.routes import records as rec
from labctl.routes.analysis import TableIndex, Wanted, _relevant, analyze_add
from labctl.routes.model import GATEWAY, LINK, Route

# ---- routes -------------------------------------------------------------------------------------------
networks = st.builds(lambda a, p: ipaddress.IPv4Network((a, p), strict=False),
                     st.integers(0, 2**32 - 1), st.integers(0, 32))
routes = st.builds(lambda d, k, g: Route(d, ipaddress.IPv4Address(g) if k == GATEWAY else None,
                                         "eth0", k),
                   networks, st.sampled_from([GATEWAY, LINK, "special"]), st.integers(1, 2**32 - 2))


@settings(max_examples=300, deadline=None)
@given(st.lists(routes, max_size=40), networks)
def test_index_answers_what_a_pass_over_the_table_answers(table, net):
    index = TableIndex(table)
    relevant = _relevant(table)
    assert index.exact(net) == [r for r in relevant if r.destination == net]
    assert index.overlapping(net) == [r for r in relevant if r.destination.overlaps(net)]


def _table(n: int) -> list[Route]:
    base = int(ipaddress.IPv4Address("10.100.0.0"))
    gw = ipaddress.IPv4Address("10.99.0.2")
    out = [Route(ipaddress.IPv4Network("10.99.0.0/16"), None, "lab0", LINK)]
    out += [Route(ipaddress.IPv4Network((base + (i << 8), 24)), gw, "lab0") for i in range(n)]
    return out


def _cost(fn, n: int) -> float:
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        fn(n)
        best = min(best, time.perf_counter() - t)
    return best


def _linear(fn, small: int) -> None:
    a, b = _cost(fn, small), _cost(fn, 4 * small)
    print(f"{small} -> {4 * small}: x{b / a:.1f}")
    assert b / a < 10, f"{small} -> {4 * small}: {a * 1000:.1f} ms -> {b * 1000:.1f} ms (quadratic?)"


def test_route_analysis_and_records_grow_linearly():
    gw = ipaddress.IPv4Address("10.99.0.2")

    def work(n: int) -> None:
        table = _table(n)
        wanted = [Wanted(r.destination, gw, f"net{i}") for i, r in enumerate(table[1:])]
        an = analyze_add(wanted, table, [])
        assert len(an.present) == 0 and len(an.foreign_present) == n
        records = [rec.Record(w.destination, gw, "lab", w.network, "", "add", None) for w in wanted]
        assert len(rec.settled(records, table)) == n
        state: dict = {"routes": []}
        rec.intend(state, [op for op in analyze_add(wanted, table[:1], []).ops], "lab")
        assert len(state["routes"]) == n

    _linear(work, 500)


# ---- dhcpd.conf ---------------------------------------------------------------------------------------
def _reference_spans(text: str) -> dict[str, tuple[int, int]]:
    """The per-name search the one-pass scan replaced."""
    spans: dict[str, tuple[int, int]] = {}
    for m in re.finditer(r"(?m)^" + re.escape(BEGIN_TAG) + r"(\S+)[ \t]*\r?$", text):
        name = m.group(1)
        end = re.compile(r"(?m)^" + re.escape(END_TAG + name) + r"[ \t]*(\r?\n|$)").search(text, m.end())
        if not end:
            continue
        start = m.start()
        if text.endswith("\r\n", 0, start):
            start -= 2
        elif text.endswith("\n", 0, start):
            start -= 1
        spans[name] = (start, end.end())
    return spans


pieces = st.sampled_from(["\n", "\r\n", " ", "x", "host a { fixed-address 10.0.0.1; }", "  "]) | \
    st.builds(lambda tag, name, tail: tag + name + tail,
              st.sampled_from([BEGIN_TAG, END_TAG, "  " + BEGIN_TAG, "# labctl: begin reservation"]),
              st.sampled_from(["a", "b", "a-b", ""]), st.sampled_from(["\n", "\r\n", " \n", "", "x\n"]))


@settings(max_examples=500, deadline=None)
@given(st.lists(pieces, max_size=30))
def test_block_scan_finds_what_the_per_name_search_found(parts):
    text = "".join(parts)
    assert dhcpd._managed_spans(text) == _reference_spans(text)


HEAD = render_dhcpd_conf(2, ipaddress.IPv4Network("10.77.0.0/16")).decode().replace(
    "range 10.77.128.0 10.77.255.254", "range 10.77.240.0 10.77.255.254")


def test_reserve_and_release_grow_linearly_with_labctl_blocks():
    def work(n: int) -> None:
        blocks = []
        for i in range(n):
            a, b = divmod(i + 3, 256)
            blocks.append(DhcpdConf.reservation_block(None, f"h{i}",  # type: ignore[arg-type]
                                                      f"00:50:56:01:{a:02x}:{b:02x}", f"10.77.{a}.{b}"))
        conf = DhcpdConf(HEAD + "".join(blocks))
        new, _ = conf.plan_reserve("bench", "00:50:56:3f:00:01", None)
        dhcpd.validate_edit(conf, new)
        gone = DhcpdConf(new).plan_release(f"h{n // 2}")
        dhcpd.validate_edit(DhcpdConf(new), gone)

    _linear(work, 500)


# ---- streamed --json ----------------------------------------------------------------------------------
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) |
                           st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=4), json_values, max_size=4), max_size=5))
def test_streamed_document_is_the_same_text(items):
    import contextlib
    import io

    from labctl import ui

    whole, streamed = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(whole):
        ui.print_document("reservations", {"reservations": items})
    with contextlib.redirect_stdout(streamed):
        ui.stream_document("reservations", "reservations", iter(items))
    assert streamed.getvalue() == whole.getvalue()


# ---- the state file ------------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["machines", "vmnets", "units", "version", "routes"]),
                       json_values, max_size=5),
       st.lists(st.dictionaries(st.text(max_size=6), json_values, max_size=4), max_size=6))
def test_state_file_with_one_line_records_reads_back_the_same(state, routes):
    import json

    from labctl.state import dump

    state = {**state, "routes": routes}
    assert json.loads(dump(state)) == state

"""Linear scale: the indexes that replaced per-item passes (routes against the table, labctl's
dhcpd.conf blocks) answer exactly what a plain pass answers, and the work grows linearly with
the input (timed at two sizes in the same run: a quadratic cost would grow 16x for 4x the
input, a linear one 4x).  scripts/bench reports the whole commands at 2,000 routes and 10,000
blocks."""

from __future__ import annotations

import ipaddress
import re
import time

import pytest
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
              st.sampled_from(["a", "b", "a-b", "", "a\r"]),
              st.sampled_from(["\n", "\r\n", " \n", "", "x\n"]))


@settings(max_examples=500, deadline=None)
@given(st.lists(pieces, max_size=30))
def test_block_scan_finds_what_the_per_name_search_found(parts):
    text = "".join(parts)
    assert list(dhcpd._managed_spans(text).items()) == list(_reference_spans(text).items())


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


# an edit re-checks only the lines it changes: the verdict must be the whole check's
tokens = st.sampled_from(["host a {", "}", "{", ";", " ", "\n", "\r\n", "x", "# c {\n", '"q;}"', '"',
                          "fixed-address 10.0.0.1;", "\t", "   \n  "])


def _whole_check(text: str) -> bool:
    try:
        dhcpd._check_structure(text, dhcpd._mask(text))
    except dhcpd.MalformedFile:
        return False
    return True


spacing = st.sampled_from(["", " ", "\n", "\n\n", "\t", "\r\n", " \n "])
statements = st.sampled_from(["x;", "x\n;", "x \n\n;", "fixed-address 10.0.0.1;", 'option a "q;}";',
                              "# c {", ";"])
well_formed = st.recursive(
    st.builds(lambda a, b, c: a + b + c, spacing, statements, spacing),
    lambda inner: st.builds(lambda head, body, sp: head + " {" + sp + "".join(body) + sp + "}",
                            st.sampled_from(["host a", "group", "subnet 10.0.0.0 netmask 255.0.0.0"]),
                            st.lists(inner, max_size=4), spacing),
    max_leaves=12)


@settings(max_examples=1500, deadline=None)
@given(st.lists(well_formed, max_size=6) | st.lists(tokens, max_size=25),
       st.lists(tokens, max_size=4), st.data())
def test_an_edit_is_checked_as_the_whole_file_would_be(parts, insert, data):
    old_text = "\n".join(parts)
    if not _whole_check(old_text):
        return
    old = DhcpdConf(old_text)
    at = data.draw(st.integers(0, len(old_text)))
    cut = data.draw(st.integers(0, len(old_text) - at))
    new_text = old_text[:at] + "".join(insert) + old_text[at + cut:]
    _check_edit(old, new_text)


@pytest.mark.parametrize("old_text, new_text", [
    ("a {\nx\n;\n}", "a {\nx\n}"),  # the word before the changed lines loses its ';'
    ("host a {\n\n}", "host a {\nx\n}"),  # the '}' after them closes a statement without one
    ("a {\n}\n", "a {\n}\n}\n"),  # one '}' too many
    ("a;\n", "}\n{\na;\n"),  # depth dips below zero and comes back
    ("x;\n", 'x;\n"\n'),  # an unterminated quote
    ("x;\n", "x;\ny\n"),  # ends inside a statement
    ("# c\nx;", "# c\nx;\n# labctl: begin reservation q\nhost q {\n}\n# labctl: end reservation q\n"),
])
def test_edits_that_break_or_keep_the_structure(old_text, new_text):
    _check_edit(DhcpdConf(old_text), new_text)


def test_reserve_and_release_check_only_the_lines_they_change():
    conf = DhcpdConf(HEAD + "".join(DhcpdConf.reservation_block(None, f"h{i}",  # type: ignore[arg-type]
                                                                   f"00:50:56:01:00:{i:02x}",
                                                                   f"10.77.0.{i + 3}")
                                    for i in range(50)))
    added, _ = conf.plan_reserve("bench", "00:50:56:3f:00:01", None)
    removed = conf.plan_release("h20")
    for new_text in (added, removed):
        masked, start, old_end, new_end = dhcpd._edited_mask(conf, new_text)
        assert new_end - start < 200  # the block's own lines, not the file
        assert dhcpd._edit_keeps_structure(conf, masked, start, old_end, new_end)


def _check_edit(old: DhcpdConf, new_text: str) -> None:
    old_text = old.text
    masked, start, old_end, new_end = dhcpd._edited_mask(old, new_text)
    assert masked == dhcpd._mask(new_text)
    assert old_text[:start] == new_text[:start]
    assert old_text[old_end:] == new_text[new_end:]
    if dhcpd._edit_keeps_structure(old, masked, start, old_end, new_end):
        assert _whole_check(new_text), (old_text, new_text)
    # and validate_edit's verdict on structure is the whole check's
    try:
        dhcpd.validate_edit(old, new_text)
    except dhcpd.MalformedFile as exc:
        if _whole_check(new_text):
            assert "docker-machine" in str(exc) or "DO-NOT-MODIFY" in str(exc), exc
    else:
        assert _whole_check(new_text), (old_text, new_text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab\n", max_size=30), st.text(alphabet="ab\n", max_size=30))
def test_common_ends_are_the_longest(a, b):
    p, s = dhcpd._common_ends(a, b)
    assert p + s <= min(len(a), len(b))
    assert a[:p] == b[:p] and (p == min(len(a), len(b)) or a[p] != b[p])
    assert a[len(a) - s:] == b[len(b) - s:]
    if p + s < min(len(a), len(b)):
        assert a[len(a) - s - 1] != b[len(b) - s - 1]


# the C-speed scans answer what the exact parser and plain per-token passes answer
garbage = st.lists(st.sampled_from(list('host {};"#\n\t\r abc01.:-\\') + ["hardware ethernet ",
                                                                          "fixed-address ", "\n# x"]),
                   max_size=40).map("".join)


def _reference_mask(text: str) -> str:
    return re.sub(r'"(?:[^"\\\n]|\\.)*"|\#[^\n]*',
                  lambda m: m.group().translate(dhcpd._HIDE) if m.group()[0] == '"'
                  else " " * len(m.group()), text)


@st.composite
def nearly_well_formed(draw) -> str:
    """Well-formed text with one character taken out or one token put in (or garbage)."""
    if draw(st.booleans()):
        return draw(garbage)
    text = "\n".join(draw(st.lists(well_formed, max_size=5)))
    at = draw(st.integers(0, len(text)))
    if text and draw(st.booleans()):
        return text[:at] + text[at + 1:]
    return text[:at] + draw(tokens) + text[at:]


@settings(max_examples=2000, deadline=None)
@given(nearly_well_formed())
def test_structure_scan_agrees_with_the_exact_parser(text):
    masked = dhcpd._mask(text)
    assert masked == _reference_mask(text)
    try:
        dhcpd._parse_nodes(text)
        parses = True
    except dhcpd.MalformedFile:
        parses = False
    assert _whole_check(text) == parses


gap = st.sampled_from(["", " ", "\n\t", "\t", "  \n"])
word_gap = st.sampled_from([" ", "\t", "\n", "", "x"])
host_body = st.builds(
    lambda g1, g2, w1, w2, mac, g3, g4, w3, addr, g5, tail: (
        g1 + "hardware" + w1 + "ethernet" + w2 + mac + g2 + ";" + g3 + "fixed-address" + w3 + addr
        + g4 + ";" + g5 + tail),
    gap, gap, word_gap, word_gap, st.sampled_from(["00:50:56:AA:bb:01", "", "a;b"]), gap, gap,
    word_gap, st.sampled_from(["10.0.0.1", "10.0.0.1,10.0.0.2", "10.0.0.1 x", "a, b", "", ","]), gap,
    st.sampled_from(["", "x;", "fixed-address 10.0.0.3;", ";"]))


@settings(max_examples=1500, deadline=None)
@given(host_body)
def test_plain_host_body_reads_as_the_general_pass(body):
    plain = dhcpd._PLAIN_BODY.fullmatch(body)
    if plain is not None:
        assert ((plain.group(1).lower(),), (plain.group(2),)) == dhcpd._host_fields(body)


def test_plain_host_body_is_the_common_case():
    body = DhcpdConf.reservation_block(None, "a", "00:50:56:aa:bb:01", "10.0.0.9")  # type: ignore[arg-type]
    body = body[body.index("{") + 1:body.index("}")]
    assert dhcpd._PLAIN_BODY.fullmatch(body)
    assert dhcpd._host_fields(body) == (("00:50:56:aa:bb:01",), ("10.0.0.9",))


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 70), st.integers(0, 70)), max_size=5),
       st.integers(0, 64), st.integers(0, 64))
def test_outside_is_what_a_pass_over_every_value_finds(ranges, first, last):
    values = [v for lo, hi in dhcpd._outside(first, last, ranges) for v in range(lo, hi + 1)]
    assert values == [v for v in range(first, last + 1)
                      if not any(lo <= v <= hi for lo, hi in ranges)]


tag_lines = st.builds(lambda kind, name, tail: kind + name + tail, st.sampled_from([BEGIN_TAG, END_TAG]),
                      st.sampled_from(["a", "b"]), st.sampled_from(["\n", "\n", "\r\n", " \n", ""]))
tagged = st.lists(tag_lines | st.sampled_from(["host a { fixed-address 10.0.0.1; }\n", "x\n", "\n", " "]),
                  max_size=20)


@settings(max_examples=500, deadline=None)
@given(tagged | st.lists(pieces, max_size=30), st.sampled_from(["a", "b", "a-b", "c"]))
def test_one_names_span_is_what_the_whole_scan_finds(parts, name):
    text = "".join(parts)
    assert dhcpd._span_of(text, name) == dhcpd._managed_spans(text).get(name)


@settings(max_examples=1000, deadline=None)
@given(tagged | st.lists(pieces, max_size=30), st.lists(tag_lines | pieces, max_size=4), st.data())
def test_an_edit_names_every_block_it_changes(parts, insert, data):
    old_text = "".join(parts)
    at = data.draw(st.integers(0, len(old_text)))
    cut = data.draw(st.integers(0, len(old_text) - at))
    new_text = old_text[:at] + "".join(insert) + old_text[at + cut:]
    old = object.__new__(DhcpdConf)  # the tags only: no need for the text to parse
    old.text, old.masked = old_text, dhcpd._mask(old_text)
    _, start, old_end, new_end = dhcpd._edited_mask(old, new_text)
    changed = dhcpd._changed_spans(old, new_text, start, old_end, new_end)
    before = dhcpd._managed_spans(old_text)
    for name, (a, b) in dhcpd._managed_spans(new_text).items():
        was = before.get(name)
        if was is None or old_text[was[0]:was[1]] != new_text[a:b]:
            assert changed.get(name) == (a, b), name
    for name, span in changed.items():
        assert dhcpd._managed_spans(new_text)[name] == span

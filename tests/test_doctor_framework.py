"""The doctor framework on its own: ordering, prerequisites, crashes, hangs, probe caching and
rendering, with small checks defined here (they are the inputs, not mocks of the framework)."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from labctl import doctor as dr
from labctl.doctor.context import Context
from labctl.doctor.core import Check, Result, Status, fail, ok, order, run, select, skip, warn
from labctl.doctor.render import render, summary_line
from labctl.errors import EXIT_USAGE, InvalidInput, MalformedFile
from labctl.paths import Paths
from tests.conftest import REPO


def mk(cid: str, fn, requires=(), timeout=None) -> Check:
    return Check(cid, cid.replace(".", " "), cid.split(".")[0], fn, tuple(requires), timeout)


def ctx(tmp_path) -> Context:
    return Context(Paths("linux", tmp_path))


def outcome_map(report) -> dict[str, tuple[str, str]]:
    return {o.check.id: (o.status.value, o.result.detail) for o in report.outcomes}


def test_failed_or_skipped_prerequisite_skips_with_reason_warn_does_not(tmp_path):
    checks = [
        mk("a.broken", lambda c: fail("it is broken", "mend it")),
        mk("a.needs_broken", lambda c: ok("ran"), ["a.broken"]),
        mk("a.needs_needs", lambda c: ok("ran"), ["a.needs_broken"]),
        mk("a.warns", lambda c: warn("meh", "tune it")),
        mk("a.needs_warn", lambda c: ok("ran"), ["a.warns"]),
    ]
    got = outcome_map(run(checks, ctx(tmp_path)))
    assert got["a.needs_broken"] == ("skip", "skipped because a.broken failed (a broken)")
    assert got["a.needs_needs"] == ("skip", "skipped because a.needs_broken was skipped (a needs_broken)")
    assert got["a.needs_warn"] == ("ok", "ran")


def test_crashing_check_is_a_failure_with_the_error_and_others_still_run(tmp_path):
    def boom(c):
        raise KeyError("machines")

    def labctl_error(c):
        raise MalformedFile("networking file not found: /x", "install VMware")

    checks = [mk("a.boom", boom), mk("a.fine", lambda c: ok("fine")), mk("a.err", labctl_error),
              mk("a.no_fix", lambda c: Result(Status.FAIL, "no fix given"))]
    report = run(checks, ctx(tmp_path))
    got = {o.check.id: o.result for o in report.outcomes}
    assert got["a.boom"].status is Status.FAIL
    assert got["a.boom"].detail == "the check crashed: KeyError: 'machines'"
    assert "labctl --debug doctor --check a.boom" in (got["a.boom"].fix or "")
    assert got["a.fine"].status is Status.OK
    assert (got["a.err"].detail, got["a.err"].fix) == ("networking file not found: /x", "install VMware")


def test_warn_or_fail_without_a_fix_is_refused():
    with pytest.raises(ValueError):
        Result(Status.WARN, "no fix")
    assert skip("why").fix is None


def test_hung_check_times_out_and_the_rest_finish(tmp_path):
    release = threading.Event()
    checks = [mk("a.hangs", lambda c: (release.wait(30), ok())[1], timeout=0.3),
              mk("a.after", lambda c: ok(), ["a.hangs"]),
              mk("a.quick", lambda c: ok("quick"))]
    started = time.monotonic()
    report = run(checks, ctx(tmp_path), timeout=5)
    assert time.monotonic() - started < 1.5
    got = outcome_map(report)
    assert got["a.hangs"] == ("fail", "timed out after 0.3 s")
    assert got["a.after"][0] == "skip"
    assert got["a.quick"] == ("ok", "quick")
    release.set()


def test_a_hung_check_cannot_keep_the_process_alive():
    script = textwrap.dedent("""
        import time
        from pathlib import Path
        from labctl.doctor.context import Context
        from labctl.doctor.core import Check, ok, run
        from labctl.paths import Paths
        hang = Check("a.hang", "hang", "a", lambda c: (time.sleep(60), ok())[1])
        report = run([hang], Context(Paths("linux", Path("/nonexistent"))), timeout=0.5)
        print(report.outcomes[0].result.detail)
    """)
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30,
                       cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "timed out after 0.5 s"
    assert time.monotonic() - started < 3


def test_checks_run_in_parallel(tmp_path):
    checks = [mk(f"a.slow{i}", lambda c: (time.sleep(0.3), ok())[1]) for i in range(8)]
    started = time.monotonic()
    run(checks, ctx(tmp_path))
    assert time.monotonic() - started < 1.2


def test_probe_runs_once_for_concurrent_callers_and_caches_errors(tmp_path):
    c = ctx(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        time.sleep(0.2)
        return 42

    results = []
    threads = [threading.Thread(target=lambda: results.append(c.memo(("k",), compute)))
               for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [42] * 5 and len(calls) == 1

    def broken():
        calls.append(2)
        raise MalformedFile("bad")

    for _ in range(3):
        with pytest.raises(MalformedFile):
            c.memo(("bad",), broken)
    assert calls.count(2) == 1


def test_order_puts_prerequisites_first_and_rejects_bad_graphs():
    a = mk("vmnet.a", lambda c: ok(), ["host.b"])
    b = mk("host.b", lambda c: ok())
    assert [c.id for c in order([a, b])] == ["host.b", "vmnet.a"]
    with pytest.raises(ValueError, match="unknown check"):
        order([mk("x.a", lambda c: ok(), ["x.missing"])])
    with pytest.raises(ValueError, match="cycle"):
        order([mk("x.a", lambda c: ok(), ["x.b"]), mk("x.b", lambda c: ok(), ["x.a"])])


def test_registered_checks_are_consistent():
    checks = dr.all_checks()
    ids = [c.id for c in checks]
    assert len(ids) == len(set(ids))
    for c in checks:
        assert c.layer in dr.core.LAYERS, c
        assert c.id.startswith(c.layer + "."), c
        for r in c.requires:
            assert ids.index(r) < ids.index(c.id)


def test_select_adds_prerequisites_and_rejects_unknown_ids():
    checks = dr.all_checks()
    got = [c.id for c in select(checks, ["lease.fixed_ip"])]
    assert "vmnet.services" in got and "host.network_tool" in got and "host.platform" not in got
    with pytest.raises(InvalidInput) as exc:
        select(checks, ["lease.fixed_ip", "no.such"])
    assert exc.value.exit_code == EXIT_USAGE


def _stream(encoding: str) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BytesIO(), encoding=encoding)


def _text(stream: io.TextIOWrapper) -> str:
    stream.flush()
    return stream.buffer.getvalue().decode(stream.encoding)  # type: ignore[attr-defined]


def test_render_unicode_and_ascii(tmp_path):
    checks = [mk("a.one", lambda c: ok("fine")), mk("a.two", lambda c: fail("bad — really", "do x")),
              mk("a.three", lambda c: ok(), ["a.two"]), mk("a.four", lambda c: warn("hm", "do y"))]
    report = run(checks, ctx(tmp_path))
    s = _stream("utf-8")
    render(report, s, env={})
    out = _text(s).splitlines()
    assert out[:5] == ["✓ a one — fine", "✗ a two — bad — really", "  fix: do x",
                       "  - 1 check skipped because of this (-v lists them)", "! a four — hm"]
    assert out[-1] == summary_line(report)
    assert out[-1].startswith("1 ok, 1 warning, 1 failed, 1 skipped in ")
    s = _stream("ascii")
    render(report, s, env={})
    out = _text(s).splitlines()
    assert out[:4] == ["[ok] a one - fine", "[xx] a two - bad ? really", "  fix: do x",
                       "  [--] 1 check skipped because of this (-v lists them)"]


def test_dependent_skips_collapse_under_their_root_cause_and_v_lists_them(tmp_path):
    checks = [mk("a.root", lambda c: fail("gone", "bring it back")),
              mk("b.one", lambda c: ok(), ["a.root"]), mk("b.two", lambda c: ok(), ["b.one"]),
              mk("c.three", lambda c: ok(), ["b.two"]), mk("c.own", lambda c: skip("nothing to test")),
              mk("c.fine", lambda c: ok("yes"))]
    report = run(checks, ctx(tmp_path))
    s = _stream("utf-8")
    render(report, s, env={})
    out = _text(s).splitlines()
    assert out == ["✗ a root — gone", "  fix: bring it back",
                   "  - 3 checks skipped because of this (-v lists them)",
                   "- c own — nothing to test", "✓ c fine — yes", summary_line(report)]
    s = _stream("utf-8")
    render(report, s, env={}, verbose=True)
    out = _text(s).splitlines()
    start = out.index("  - skipped because of this (3):")
    assert [x.split("  [")[0].strip() for x in out[start + 1:start + 4]] == ["b one", "b two", "c three"]


def test_long_lines_wrap_at_the_width_with_an_indent_and_colour_follows_the_stack(tmp_path):
    detail = "a long detail " * 12 + "`a command that stays whole`"
    report = run([mk("a.long", lambda c: fail(detail.strip(), "run " + "this and that " * 8))],
                 ctx(tmp_path))
    s = _stream("utf-8")
    render(report, s, env={"COLUMNS": "60"})
    out = _text(s).splitlines()
    assert all(len(line) <= 60 for line in out[:-1]), out
    assert out[0].startswith("✗ a long — a long detail") and out[1].startswith("  detail a long")
    assert any("`a command that stays whole`" in line for line in out)
    fix = [line for line in out if line.startswith("  fix: ")]
    assert fix and out[out.index(fix[0]) + 1].startswith("       ")  # hanging indent under the fix
    s = _stream("utf-8")
    render(report, s, env={"FORCE_COLOR": "1"})
    assert "\x1b[31m✗\x1b[0m" in _text(s)
    s = _stream("utf-8")
    render(report, s, env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert "\x1b[" not in _text(s)


def test_summary_seconds_and_counts(tmp_path):
    report = run([mk("a.x", lambda c: ok())], ctx(tmp_path))
    s = report.summary()
    assert s["ok"] == 1 and s["fail"] == s["warn"] == s["skip"] == 0 and s["seconds"] >= 0


def test_bounded_runner_returns_whole_output_under_parallel_load(tmp_path):
    """Doctor runs its probes' commands from parallel threads: every run must return the
    command's complete stdout (and be capped at the doctor's timeout)."""
    from labctl.doctor.context import BoundedRunner

    sample = tmp_path / "out.txt"
    sample.write_text("docker-machine version 0.16.2, build bd45ab13\n")
    runner = BoundedRunner(2.0)
    empty: list[str] = []

    def go() -> None:
        for _ in range(10):
            if runner.run(["cat", str(sample)], timeout=60).stdout != sample.read_text():
                empty.append("x")

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert empty == []
    started = time.monotonic()
    with pytest.raises(Exception, match="did not finish within 0.5 s"):
        BoundedRunner(0.5).run(["sleep", "30"], timeout=60)
    assert time.monotonic() - started < 2

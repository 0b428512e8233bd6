"""Planners and decisions, table-driven: (routing table, records, wanted) -> ops / refusals /
warnings; the Engine >= 28 decision on real inspect data; docker-machine config parsing on
the real recorded output; persistence units rendered and validated."""

from __future__ import annotations

import json
import os
import shutil
from ipaddress import IPv4Address as A
from ipaddress import IPv4Network as N
from pathlib import Path

import pytest

from labctl import engine
from labctl.errors import Conflict, InvalidInput, MalformedFile, PreconditionMissing
from labctl.paths import Paths
from labctl.routes import persist
from labctl.routes.analysis import Wanted, analyze_add, analyze_remove, route_state
from labctl.routes.model import parse_cidr, parse_gateway
from labctl.routes.parse import parse_ip_text
from labctl.routes.planner import RouteBatch, plan_add, plan_sync
from labctl.routes.records import Record
from tests.conftest import fixtures_dir

DATA = Path(__file__).parent / "data" / "routes"
GW = A("192.168.99.100")

TABLE = parse_ip_text("""\
default via 10.0.2.2 dev eth0 proto dhcp metric 100
10.0.2.0/24 dev eth0 proto kernel scope link src 10.0.2.15
192.168.99.0/24 dev vmnet2 proto kernel scope link src 192.168.99.1
172.18.0.0/16 via 192.168.99.7 dev vmnet2
10.8.0.0/16 via 10.8.0.1 dev tun0
10.8.0.1 dev tun0 scope link
172.16.0.0/12 via 10.8.0.1 dev tun0
""")


def add(dest: str, records=(), table=TABLE):
    return analyze_add([Wanted(N(dest), GW, "net")], table, list(records))


CASES = [
    # dest, records, expected ops, conflict substring, warning substring
    ("172.17.0.0/16", [], [("add", "172.17.0.0/16")], None, "VPN route 172.16.0.0/12"),
    ("10.201.0.0/24", [], [("add", "10.201.0.0/24")], None, None),
    ("172.18.0.0/16", [], [], "172.18.0.0/16 via 192.168.99.7 dev vmnet2", None),
    ("172.18.0.0/16", [Record(N("172.18.0.0/16"), A("192.168.99.7"))], [("replace", "172.18.0.0/16")],
     None, None),
    ("10.0.0.0/16", [], [], "overlaps the host network 10.0.2.0/24 on eth0", None),
    ("192.168.0.0/16", [], [], "contains its own gateway", None),
    ("10.8.0.0/16", [], [], "10.8.0.0/16 via 10.8.0.1 dev tun0", None),
    ("10.0.2.0/24", [], [], "directly connected", None),
]


@pytest.mark.parametrize("dest,records,ops,conflict,warning", CASES)
def test_analyze_add(dest, records, ops, conflict, warning):
    res = add(dest, records)
    assert [(o.action, str(o.destination)) for o in res.ops] == ops
    if conflict:
        assert res.conflicts and conflict in res.conflicts[0][0], res.conflicts
        assert res.conflicts[0][1]  # every refusal has a fix
    else:
        assert not res.conflicts, res.conflicts
    if warning:
        assert any(warning in w for w in res.warnings + res.overlaps), (res.warnings, res.overlaps)
        assert any("bip=" in w for w in res.warnings + res.overlaps)


def test_gateway_off_link_is_refused():
    res = analyze_add([Wanted(N("172.17.0.0/16"), A("192.168.50.5"))], TABLE, [])
    assert res.conflicts and "not on any network" in res.conflicts[0][0]


def test_present_foreign_and_own():
    table = TABLE + parse_ip_text("172.20.0.0/16 via 192.168.99.100 dev vmnet2\n")
    res = add("172.20.0.0/16", table=table)
    assert not res.ops and res.foreign_present and "not made by labctl" in res.notes[0]
    res = add("172.20.0.0/16", [Record(N("172.20.0.0/16"), GW)], table=table)
    assert not res.ops and res.present


def test_remove_only_own_gateway():
    recs = [Record(N("172.18.0.0/16"), GW), Record(N("172.30.0.0/16"), GW)]
    res = analyze_remove(recs, TABLE)
    assert res.ops == []  # 172.18 now routes via .7 (not ours); 172.30 is gone
    assert any("labctl did not make" in n for n in res.notes)
    assert any("already gone" in n for n in res.notes)


def test_route_states():
    table = TABLE + parse_ip_text("172.20.0.0/16 via 192.168.99.100 dev vmnet2\n")
    rec = Record(N("172.20.0.0/16"), GW)
    assert route_state(rec, table, None) == "present"
    assert route_state(rec, table, {N("10.0.0.0/8")}) == "stale"
    assert route_state(Record(N("172.18.0.0/16"), GW), table, None) == "conflicting"
    assert route_state(Record(N("172.21.0.0/16"), GW), table, None) == "missing"


def test_plan_is_one_privileged_batch():
    paths = Paths("linux", Path("/"))
    wanted = [Wanted(N(f"10.{100 + i // 256}.{i % 256}.0/24"), GW) for i in range(100)]
    plan = plan_add(paths, wanted, TABLE, [])
    batches = [c for c in plan.changes if isinstance(c, RouteBatch)]
    assert len(plan.changes) == 1 and len(batches) == 1 and plan.privileged
    assert len(batches[0].ops) == 100
    assert batches[0].commands()[0].argv[-5:] == ["route", "replace", "10.100.0.0/24", "via", str(GW)]


def test_conflict_raises_before_any_change():
    paths = Paths("linux", Path("/"))
    with pytest.raises(Conflict) as err:
        plan_add(paths, [Wanted(N("172.17.0.0/16"), GW), Wanted(N("172.18.0.0/16"), GW)], TABLE, [])
    assert err.value.exit_code == 2 and "192.168.99.7" in err.value.message


def test_sync_adds_new_and_removes_stale():
    paths = Paths("linux", Path("/"))
    table = TABLE + parse_ip_text("172.20.0.0/16 via 192.168.99.100 dev vmnet2\n")
    recs = [Record(N("172.20.0.0/16"), GW, network="gone")]
    plan = plan_sync(paths, [Wanted(N("10.201.0.0/24"), GW, "labnet")], table, recs)
    (batch,) = plan.changes
    assert isinstance(batch, RouteBatch)
    assert [(o.action, str(o.destination)) for o in batch.ops] == [("add", "10.201.0.0/24"),
                                                                  ("delete", "172.20.0.0/16")]


@pytest.mark.parametrize("bad", ["172.17.0.0", "172.17.0.1/16", "300.0.0.0/8", "10.0.0.0/4",
                                 "127.0.0.0/8", "224.0.0.0/8", "x", ""])
def test_invalid_cidr(bad):
    with pytest.raises(InvalidInput):
        parse_cidr(bad)


@pytest.mark.parametrize("bad", ["1.2.3", "0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255", "gw"])
def test_invalid_gateway(bad):
    with pytest.raises(InvalidInput):
        parse_gateway(bad)


# ---- Engine ------------------------------------------------------------------------------------
def real_inspect() -> tuple[str, list[dict]]:
    """`docker network inspect bridge labnet host none` recorded from the lab's real dockerd."""
    data = json.loads((DATA / "engine-20.10-network-inspect.json").read_text())
    return data["engine_version"], data["networks"]


def test_networks_from_real_inspect():
    version, raw = real_inspect()
    nets = [engine.network_from_inspect(n) for n in raw]
    by = {n.name: n for n in nets}
    assert by["bridge"].subnets == (N("172.17.0.0/16"),) and by["bridge"].default_bridge
    assert by["labnet"].subnets == (N("10.201.0.0/24"),) and by["labnet"].containers == 1
    assert by["host"].subnets == () and by["none"].subnets == ()
    assert all(engine.reachability(version, n) == "direct" for n in nets)  # 20.10: every port


def test_engine_28_decision_on_real_inspect():
    _, raw = real_inspect()
    nets = {n["Name"]: engine.network_from_inspect(n) for n in raw}
    assert engine.reachability("28.0.1", nets["bridge"]) == "published-only"
    assert engine.reachability("28.2.2", nets["labnet"]) == "published-only"
    unprotected = dict(raw[1], Options={**raw[1]["Options"], engine.GATEWAY_MODE_V4: "nat-unprotected"})
    assert engine.reachability("28.0.1", engine.network_from_inspect(unprotected)) == "direct"
    routed = dict(raw[1], Options={**raw[1]["Options"], engine.GATEWAY_MODE_V4: "routed"})
    assert engine.reachability("29.0.0", engine.network_from_inspect(routed)) == "published-only"
    assert engine.reachability("27.5.1", nets["labnet"]) == "direct"
    assert "labctl route add --unprotect labnet" in engine.unprotect_advice(nets["labnet"])
    assert "default bridge" in engine.unprotect_advice(nets["bridge"])


def test_recreate_args_keeps_ipam_and_refuses_busy_or_predefined():
    _, raw = real_inspect()
    with pytest.raises(Conflict, match="container"):
        engine.recreate_args(raw[1])
    with pytest.raises(Conflict, match="predefined"):
        engine.recreate_args(raw[0])
    args = engine.recreate_args(dict(raw[1], Containers={}))
    assert args["options"][engine.GATEWAY_MODE_V4] == "nat-unprotected"
    assert args["options"]["com.docker.network.bridge.name"] == "br-lab"
    assert args["ipam"]["Config"][0]["Subnet"] == "10.201.0.0/24"


def test_machine_config_from_real_output():
    text = (fixtures_dir("docker-machine") / "reachable-config-lab.stdout").read_text()
    t = engine.parse_machine_config(text, "lab")
    assert t.url == "tcp://192.168.99.10:2376" and t.host == "192.168.99.10"
    assert t.ca == Path("/tmp/dm-store/machines/lab/ca.pem")
    assert t.cert == Path("/tmp/dm-store/machines/lab/cert.pem")
    assert t.key == Path("/tmp/dm-store/machines/lab/key.pem")


def test_machine_store_and_env(tmp_path):
    store = tmp_path / "store"
    (store / "machines" / "lab").mkdir(parents=True)
    shutil.copy(fixtures_dir("docker-machine") / "machines-lab-config.json",
                store / "machines" / "lab" / "config.json")
    t = engine.target_from_store("lab", store)
    assert t.url == "tcp://192.168.99.10:2376" and t.ca == store / "machines/lab/ca.pem"
    with pytest.raises(PreconditionMissing):
        engine.target_from_store("nope", store)
    with pytest.raises(PreconditionMissing, match="TLS files"):
        engine.target_from_env("tcp://192.168.99.10:2376", {"DOCKER_CERT_PATH": str(tmp_path)})
    with pytest.raises(InvalidInput):
        engine.target_from_env("http://x", {})
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    t = engine.target_from_env(None, {"DOCKER_HOST": "tcp://10.0.0.5:2376",
                                      "DOCKER_CERT_PATH": str(tmp_path)})
    assert t.tcp and t.key == tmp_path / "key.pem"


# ---- persistence ---------------------------------------------------------------------------------
def test_units_render_and_validate():
    linux = persist.render_unit(Paths("linux", Path("/")), "lab", "192.168.99.100", "vmnet2")
    persist.validate_systemd(linux, "labctl-routes-lab.service")
    text = linux.decode()
    assert "BindsTo=sys-subsystem-net-devices-vmnet2.device" in text
    assert "WantedBy=multi-user.target sys-subsystem-net-devices-vmnet2.device" in text
    assert text.splitlines()[-1].startswith("WantedBy=")
    mac = persist.render_unit(Paths("darwin", Path("/")), "lab", "192.168.99.100", "vmnet2")
    persist.validate_plist(mac)
    import plistlib

    doc = plistlib.loads(mac)
    assert doc["Label"] == "io.labctl.routes.lab" and doc["RunAtLoad"] is True
    assert doc["ProgramArguments"][-4:] == ["route", "sync", "lab", "--offline"]


def test_broken_units_are_rejected():
    with pytest.raises(MalformedFile):
        persist.validate_plist(b"<plist><dict><key>Label</key></plist>")
    with pytest.raises(MalformedFile):
        persist.validate_plist(b'<?xml version="1.0"?><plist version="1.0"><dict/></plist>')
    good = persist.render_unit(Paths("linux", Path("/")), "lab", "192.168.99.100", None)
    with pytest.raises(MalformedFile):
        persist.validate_systemd(good.replace(b"[Install]", b""))
    if shutil.which("systemd-analyze"):
        with pytest.raises(MalformedFile, match="service type"):
            persist.validate_systemd(good.replace(b"Type=oneshot", b"Type=bogus"),
                                     "labctl-routes-lab.service")


def test_device_unit_escape():
    assert persist.device_unit("vmnet2") == "sys-subsystem-net-devices-vmnet2.device"
    assert persist.device_unit("br-lab") == "sys-subsystem-net-devices-br\\x2dlab.device"


# ---- write-ahead records settled by the table (issue 10, item 2) ------------------------------
def test_pending_records_settle_against_the_table():
    from labctl.routes import records as rec
    from labctl.routes.tables import RouteOp

    here = parse_ip_text("192.168.99.0/24 dev vmnet2 scope link\n10.1.0.0/24 via 192.168.99.100\n"
                         "10.3.0.0/24 via 192.168.99.7\n10.4.0.0/24 via 192.168.99.100\n")
    state = {"routes": [Record(N("10.3.0.0/24"), A("192.168.99.7"), "lab").as_dict(),
                        Record(N("10.4.0.0/24"), GW, "lab").as_dict(),
                        Record(N("10.5.0.0/24"), GW, "lab").as_dict()]}
    rec.intend(state, [RouteOp("add", N("10.1.0.0/24"), GW), RouteOp("add", N("10.2.0.0/24"), GW),
                       RouteOp("replace", N("10.3.0.0/24"), GW), RouteOp("delete", N("10.4.0.0/24"), GW),
                       RouteOp("delete", N("10.5.0.0/24"), GW)], "lab")
    pending = {r["destination"]: (r.get("pending"), r.get("previous")) for r in state["routes"]}
    assert pending == {"10.1.0.0/24": ("add", None), "10.2.0.0/24": ("add", None),
                       "10.3.0.0/24": ("add", "192.168.99.7"), "10.4.0.0/24": ("delete", None),
                       "10.5.0.0/24": ("delete", None)}
    # killed before the batch finished: 10.1 got in, 10.2 did not, the replace of 10.3 and the
    # delete of 10.4 did not happen, 10.5 was deleted
    assert rec.settle(state, here)
    after = {r["destination"]: (r["gateway"], r.get("pending")) for r in state["routes"]}
    assert after == {"10.1.0.0/24": ("192.168.99.100", None), "10.3.0.0/24": ("192.168.99.7", None),
                     "10.4.0.0/24": ("192.168.99.100", None)}
    assert not rec.settle(state, here)


def test_a_pending_route_in_the_table_is_adopted_not_foreign(tmp_path, monkeypatch):
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path))
    table = parse_ip_text("192.168.99.0/24 dev vmnet2 scope link\n10.1.0.0/24 via 192.168.99.100\n")
    pending = Record(N("10.1.0.0/24"), GW, "lab", pending="add")
    plan = plan_add(Paths("linux", Path("/")), [Wanted(N("10.1.0.0/24"), GW)], table, [pending], "lab")
    assert not any(isinstance(c, RouteBatch) for c in plan.changes)
    assert [c.description for c in plan.changes] == [
        "settle labctl's unfinished route records (10.1.0.0/24)"]
    assert not any("never remove" in n for n in plan.notes)


# ---- after the batch: ip's own word as root, the table read back otherwise -------------------------
FAKE_IP = """#!/bin/sh
echo "$*" >> "$IP_LOG"
case "$*" in
  "-batch -") cat > /dev/null; exit "${IP_RC:-0}" ;;
  *"-j route"*) cat "$IP_TABLE" ;;
esac
"""


def _batch_world(tmp_path, monkeypatch, table: list[dict], rc: int):
    if os.geteuid() != 0:
        pytest.skip("labctl takes ip's word for a batch only when it runs ip itself as root")
    root = tmp_path / "root"
    (root / "sbin").mkdir(parents=True)
    (root / "sbin/ip").write_text(FAKE_IP)
    (root / "sbin/ip").chmod(0o755)
    (tmp_path / "table.json").write_text(json.dumps(table))
    monkeypatch.setenv("IP_LOG", str(tmp_path / "ip.log"))
    monkeypatch.setenv("IP_TABLE", str(tmp_path / "table.json"))
    monkeypatch.setenv("IP_RC", str(rc))
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path / "state"))
    return Paths("linux", root)


def _run_batch(paths, ops, tmp_path):
    from labctl.plan import ExecContext
    from labctl.runner import Runner

    RouteBatch(paths, ops, "lab").apply(ExecContext(runner=Runner(), backup_dir=tmp_path / "bak"))
    return (tmp_path / "ip.log").read_text().splitlines()


def test_a_batch_ip_acknowledged_is_recorded_without_reading_the_table(tmp_path, monkeypatch):
    from labctl import state as labstate
    from labctl.routes.tables import RouteOp

    paths = _batch_world(tmp_path, monkeypatch, [], 0)
    calls = _run_batch(paths, [RouteOp("add", N("10.1.0.0/24"), GW, "net1"),
                               RouteOp("add", N("10.2.0.0/24"), GW, "net2")], tmp_path)
    assert calls == ["-batch -"]  # the (empty) table was not read: it would say nothing is there
    routes = labstate.load(paths)["routes"]
    assert [(r["destination"], r["gateway"], r.get("pending")) for r in routes] == [
        ("10.1.0.0/24", str(GW), None), ("10.2.0.0/24", str(GW), None)]


def test_another_runs_pending_record_or_a_failed_batch_reads_the_table(tmp_path, monkeypatch):
    from labctl import state as labstate
    from labctl.errors import CommandFailed
    from labctl.routes.tables import RouteOp

    table = [{"dst": "10.1.0.0/24", "gateway": str(GW), "dev": "vmnet2"},
             {"dst": "10.9.0.0/24", "gateway": str(GW), "dev": "vmnet2"}]
    paths = _batch_world(tmp_path, monkeypatch, table, 0)
    other = Record(N("10.9.0.0/24"), GW, "lab", pending="add")
    labstate.state_path(paths).parent.mkdir(parents=True)
    labstate.state_path(paths).write_bytes(labstate.dump({**labstate.EMPTY, "routes": [other.as_dict()]}))
    calls = _run_batch(paths, [RouteOp("add", N("10.1.0.0/24"), GW, "net1")], tmp_path)
    assert calls == ["-batch -", "-4 -j route show table main"]
    assert {r["destination"]: r.get("pending") for r in labstate.load(paths)["routes"]} == {
        "10.1.0.0/24": None, "10.9.0.0/24": None}

    (tmp_path / "ip.log").unlink()
    monkeypatch.setenv("IP_RC", "1")
    with pytest.raises(CommandFailed, match="did not all take effect: add 10.2.0.0/24"):
        _run_batch(paths, [RouteOp("add", N("10.2.0.0/24"), GW, "net2")], tmp_path)
    assert (tmp_path / "ip.log").read_text().splitlines() == ["-batch -", "-4 -j route show table main"]
    assert "10.2.0.0/24" not in {r["destination"] for r in labstate.load(paths)["routes"]}

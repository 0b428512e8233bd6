"""The lab planner, table-driven: each case in tests/data/plans/ is a starting state (the facts,
as small data), what is asked (``up`` flags or ``down`` names) and the phases the planner must
return (each step as ``Kind: description``), or the error it must raise.  No root, no lab: the
planner is a pure function of the facts.

A case file::

    {"about": "…", "platform": "linux",
     "up": {"name": "lab", "nic": "existing"}          # or "down": {"names": [...], "keep_vm": false}
     "world": {…},                                      # see build_world
     "phases": [["phase title", ["Kind: description", …]], …],   # the phases with changes
     "warnings": […], "notes": […]                     # optional: what the plan says
     "error": "text of the error"                       # instead of phases
    }

``python -m tests.test_planner CASE.json`` prints what the planner returns for a case (to
write a new one; every expectation in the files was checked by hand against the facts).
"""

from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from labctl.errors import LabctlError
from labctl.paths import Paths

CASES = Path(__file__).parent / "data" / "plans"
ROOT = Path("/r")
STORE = "/home/me/.docker/machine"

VMX = """.encoding = "UTF-8"
config.version = "8"
virtualHW.version = "10"
displayName = "{name}"
guestOS = "other3xlinux-64"
memsize = "2048"
numvcpus = "2"
ethernet0.present = "TRUE"
ethernet0.connectionType = "{nic0_type}"
ethernet0.virtualDev = "vmxnet3"
ethernet0.addressType = "generated"
"""


def networking(vmnets: dict[str, Any]) -> str:
    """{"8": ["192.168.151.0/24", "nat"], "2": "192.168.99.0/24", "3": ["…", "bridged"],
    "4": ["…", "nodhcp"]}"""
    lines = ["VERSION=1,0"]
    for key in sorted(vmnets, key=int):
        value = vmnets[key]
        subnet, kind = (value, "hostonly") if isinstance(value, str) else value
        net = ipaddress.IPv4Network(subnet)
        if kind == "bridged":
            lines.append(f"add_bridge_mapping eth0 {key}")
            continue
        lines += [f"answer VNET_{key}_DHCP {'no' if kind == 'nodhcp' else 'yes'}",
                  f"answer VNET_{key}_HOSTONLY_NETMASK {net.netmask}",
                  f"answer VNET_{key}_HOSTONLY_SUBNET {net.network_address}"]
        if kind == "nat":
            lines.append(f"answer VNET_{key}_NAT yes")
        lines.append(f"answer VNET_{key}_VIRTUAL_ADAPTER yes")
    return "\n".join(lines) + "\n"


def dhcpd(vmnet: int, spec: dict[str, Any]) -> str:
    """{"subnet": "…", "hosts": [[name, mac, ip], …], "foreign": [[name, mac, ip], …]}:
    VMware's file for the subnet, labctl's blocks, then blocks a user wrote."""
    from labctl.hypervisor.vmware.dhcpd import DhcpdConf
    from labctl.hypervisor.vmware.lab import render_dhcpd_conf

    text = render_dhcpd_conf(vmnet, ipaddress.IPv4Network(spec["subnet"])).decode()
    for name, mac, ip in spec.get("hosts", []):
        text, _ = DhcpdConf(text).plan_reserve(name, mac, ip)
    for name, mac, ip in spec.get("foreign", []):
        text += f"host {name} {{\n\thardware ethernet {mac};\n\tfixed-address {ip};\n}}\n"
    return text


def vmx(name: str, spec: dict[str, Any]) -> str:
    """{"mac0": "00:0c:29:…" (absent: never booted), "nic0_type": "nat",
        "ethernet1": {"vmnet": 2, "mac": "…"}}"""
    text = VMX.format(name=name, nic0_type=spec.get("nic0_type", "nat"))
    if spec.get("mac0"):
        text += f'ethernet0.generatedAddress = "{spec["mac0"]}"\n'
    if spec.get("ethernet1"):
        e1 = spec["ethernet1"]
        text += (f'ethernet1.present = "TRUE"\nethernet1.connectionType = "custom"\n'
                 f'ethernet1.vnet = "vmnet{e1["vmnet"]}"\nethernet1.virtualDev = "vmxnet3"\n'
                 f'ethernet1.addressType = "{e1.get("type", "static")}"\nethernet1.address = "{e1["mac"]}"\n')
    return text


def vm_facts(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """{"eth0": "192.168.151.130/24", "eth1": "192.168.99.3/24", "rule": "eth1 192.168.99.0/24",
    "boot": true}: the VM's addresses, labctl's DOCKER-USER rule in place, and its block in
    bootsync.sh (boot2docker, FORWARD policy DROP)."""
    from labctl import vmpath

    out: dict[str, Any] = {"addresses": {k: [v] for k, v in spec.items() if k.startswith(("eth", "docker"))},
                           "forward_policy": "DROP", "user_rules": []}
    if spec.get("rule"):
        iface, subnet = spec["rule"].split()
        out["user_rules"] = [{"-i": iface, "-s": subnet, "-j": "ACCEPT"}]
        if spec.get("boot"):
            rule = vmpath.Rule(iface, ipaddress.IPv4Network(subnet))
            out["bootsync"] = vmpath.with_block(None, name, rule)
    return out


def build_world(case: dict[str, Any]) -> Any:
    from labctl.world import World

    data = json.loads(json.dumps(case.get("world", {})))
    data.setdefault("store", STORE)
    data.setdefault("dm_binary", "/usr/local/bin/docker-machine")
    if isinstance(data.get("networking"), dict):
        data["networking"] = networking(data["networking"])
    data["dhcpd"] = {k: dhcpd(int(k), v) if isinstance(v, dict) else v
                     for k, v in (data.get("dhcpd") or {}).items()}
    for name, m in (data.get("machines") or {}).items():
        if isinstance(m.get("vmx"), dict):
            m["vmx"] = vmx(name, m["vmx"])
        if isinstance(m.get("vm"), dict) and "later" not in m["vm"]:
            m["vm"] = vm_facts(name, m["vm"])
    return World.from_data(data, paths(case))


def paths(case: dict[str, Any]) -> Paths:
    return Paths(case.get("platform", "linux"), ROOT)


def run_case(case: dict[str, Any]) -> Any:
    from labctl import planner

    world = build_world(case)
    if "down" in case:
        d = case["down"]
        return planner.plan_down(world, d["names"], d.get("keep_vm", False))
    flags = dict(case.get("up") or {})
    persist = flags.pop("persist", False)
    return planner.plan_up(world, spec_of(case), planner.UpOptions(persist=persist))


def spec_of(case: dict[str, Any]) -> Any:
    """The wanted lab: ``up`` flags, or a lab.toml as data (``{"config": {…}}``)."""
    from labctl import labspec

    flags = dict(case.get("up") or {})
    flags.pop("persist", None)
    if "config" in flags:
        return labspec.parse(flags["config"], paths(case).platform)
    return labspec.from_flags(paths(case).platform, flags.pop("name", "lab"), **flags)


def outcome(plan: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"phases": [[p.title, [f"{type(c).__name__}: {c.description}" for c in p.changes]]
                                      for p in plan.phases if not p.empty]}
    warnings = [w for p in plan.phases for w in p.warnings]
    notes = [n for p in plan.phases for n in p.notes]
    if warnings:
        out["warnings"] = warnings
    if notes:
        out["notes"] = notes
    return out


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("LABCTL_ROOT", raising=False)


@pytest.mark.parametrize("path", sorted(CASES.glob("*.json")), ids=lambda p: p.stem)
def test_plan(path):
    case = load(path)
    if "error" in case:
        with pytest.raises(LabctlError) as exc:
            run_case(case)
        assert case["error"] in exc.value.message, exc.value.message
        return
    got = outcome(run_case(case))
    want = {k: case[k] for k in ("phases", "warnings", "notes") if k in case}
    want.setdefault("phases", [])
    assert got == want


def test_cases_cover_both_commands_and_platforms():
    cases = [load(p) for p in CASES.glob("*.json")]
    assert len(cases) >= 25
    assert {c.get("platform", "linux") for c in cases} == {"linux", "darwin"}
    assert sum("down" in c for c in cases) >= 8 and sum("error" in c for c in cases) >= 5


def test_every_up_phase_is_planned_against_what_the_earlier_ones_leave():
    """A fresh desktop: the dry run shows every step through to the docker context, the later
    ones with the values they will learn (the engine's address), none with a stale fact."""
    plan = run_case(load(CASES / "up-fresh-linux-dedicated.json"))
    kinds = [type(c).__name__ for c in plan.changes]
    order = ["WriteFile", "CreateMachine", "StopVM", "EditVmx", "Reserve", "RestartNetworking",
             "StartVM", "RouteBatch", "DockerContext"]
    positions = [kinds.index(k) for k in order]
    assert positions == sorted(positions), kinds
    context = next(c for c in plan.changes if type(c).__name__ == "DockerContext")
    assert "<lab's engine URL>" in context.description


def test_a_converged_world_plans_nothing_and_each_applied_phase_disappears():
    """Planning again from the world a plan leaves (its projection) finds nothing to do: the
    planner's picture of each change's effect is complete."""
    from labctl import planner

    for name in sorted(p.name for p in CASES.glob("up-*.json") if "error" not in p.name):
        case = load(CASES / name)
        plan = run_case(case)
        again = planner.plan_up(plan.world, spec_of(case))
        left = [(p.title, [c.description for c in p.changes]) for p in again.phases if not p.empty]
        assert left == [], (name, left)


if __name__ == "__main__":  # print a case's outcome (for writing new cases)
    import os

    os.environ.setdefault("LABCTL_STATE_DIR", "/tmp/labctl-planner-cases")
    c = load(Path(sys.argv[1]))
    try:
        print(json.dumps(outcome(run_case(c)), indent=2))
    except LabctlError as e:
        print("error:", e.message)


# ---- --ca-cert: the CA phase (certificates made by the real openssl) --------------------------------
@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory) -> Path:
    import subprocess

    d = tmp_path_factory.mktemp("ca")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", "key.pem", "-out", "corp.pem", "-days", "2", "-subj", "/CN=corp"],
                   cwd=d, check=True, capture_output=True)
    return d / "corp.pem"


def _ca_world(files: dict[str, str], ca_record: list[str] | None = None) -> Any:
    from labctl import vmcerts

    case = load(CASES / "up-converged.json")
    world = build_world(case)
    certs = vmcerts.CertFacts(os_id="boot2docker", boot2docker=True, files=dict(files), complete=True)
    world = world.with_machine("lab", certs=certs)
    if ca_record is not None:
        world = world.with_state(lambda s: s["machines"]["lab"].update(ca_certs=ca_record))
    return world


def test_ca_phase_installs_once_and_then_is_converged(ca_pem):
    from labctl import labspec, planner, vmcerts

    spec = labspec.from_flags("linux", "lab", ca_certs=[str(ca_pem)])
    cert = spec.machines[0].ca_certs[0]
    plan = planner.plan_up(_ca_world({}), spec)
    ca = next(p for p in plan.phases if p.key == "ca:lab")
    kinds = [type(c).__name__ for c in ca.changes]
    assert kinds == ["VmPath", "VmEngineRestart", "Record"], kinds
    assert f"/var/lib/boot2docker/certs/{cert.stem}.pem" in ca.changes[0].description
    assert "restart its engine" in ca.changes[1].description
    # the other phases of a converged lab stay empty; planning again from the result: nothing
    assert [p.key for p in plan.phases if not p.empty] == ["ca:lab"]
    assert planner.plan_up(plan.world, spec).changes == []
    # with the CA in place and recorded: nothing to do
    path = vmcerts.CertFacts(boot2docker=True).path_for(cert)
    assert planner.plan_up(_ca_world({path: cert.pem}, [cert.sha256]), spec).changes == []


def test_down_removes_labctls_cas_from_a_vm_that_stays(ca_pem):
    from labctl import planner, vmcerts

    cert = vmcerts.load_certs([ca_pem])[0]
    path = vmcerts.CertFacts(boot2docker=True).path_for(cert)
    world = _ca_world({path: cert.pem}, [cert.sha256])
    world = world.with_state(lambda s: s["machines"]["lab"].update(created_by_labctl=False))
    plan = planner.plan_down(world, ["lab"])
    ca = next(p for p in plan.phases if p.key == "ca:lab")
    assert [type(c).__name__ for c in ca.changes] == ["VmPath", "VmEngineRestart"]
    assert ca.changes[0].description == f"remove labctl's CA certificate {path} from lab"
    # a VM labctl removes takes them along: no step for them
    world = world.with_state(lambda s: s["machines"]["lab"].update(created_by_labctl=True))
    assert next(p for p in planner.plan_down(world, ["lab"]).phases if p.key == "ca:lab").empty

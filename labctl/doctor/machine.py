"""machine and forwarding layers: the docker-machine VM (through labctl.machine's adapter)."""

from __future__ import annotations

import ipaddress
import re
import shlex

from labctl.doctor.context import Context
from labctl.doctor.core import Result, check, fail, ok, skip, warn
from labctl.doctor.host import network_restart_fix
from labctl.errors import CommandTimeout
from labctl.validate import shell

_INET = re.compile(r"\binet (\d+\.\d+\.\d+\.\d+)/(\d+)")


@check("machine.exists", "docker-machine has the lab machine",
       requires=("lab.machine", "docker-machine.installed"))
def exists(ctx: Context) -> Result:
    rec = ctx.record()
    dm = ctx.dm()
    if not dm.exists(rec.name):
        return fail(f"no machine {rec.name} in docker-machine's store {dm.store}",
                    f"labctl up {shell(rec.name)}  (or set MACHINE_STORAGE_PATH to the store it is in)")
    details = dm.read_config(rec.name)
    return ok(f"{rec.name} (driver {details.driver or '?'}) in {dm.machine_dir(rec.name)}")


def _hung_fix(ctx: Context) -> str:
    rec = ctx.record()
    if rec.vmx:
        return (f"the VM or VMware hangs: {shlex.quote(str(ctx.paths.hypervisor.vmrun))} stop "
                f"{shlex.quote(rec.vmx)} hard && docker-machine start {shell(rec.name)}")
    return f"the VM or VMware hangs: docker-machine restart {shell(rec.name)}"


@check("machine.running", "Lab machine running", requires=("machine.exists",))
def running(ctx: Context) -> Result:
    rec = ctx.record()
    try:
        state = ctx.machine_status()
    except CommandTimeout:
        return fail(f"docker-machine status {rec.name} did not answer within {ctx.command_timeout:g} s",
                    _hung_fix(ctx))
    if state == "Running":
        return ok("Running")
    return fail(f"{rec.name} is {state or 'in an unknown state'}",
                f"docker-machine start {shell(rec.name)}")


@check("machine.address", "VM has the reserved IP", requires=("machine.running", "reservation.ip"))
def address(ctx: Context) -> Result:
    """What the VM's own interfaces say (the leases file cannot show fixed addresses)."""
    rec = ctx.record()
    host = ctx.reservation()
    out = ctx.vm_firewall().addr_text  # the VM's one-ssh probe (``ip -4 -o addr show``)
    addrs = [m.group(1) for m in _INET.finditer(out) if not m.group(1).startswith("127.")]
    if host.ip in addrs:
        return ok(f"{rec.name} has {host.ip} ({', '.join(addrs)})")
    net = ctx.vmnet().network if ctx.vmnet() is not None else None
    on_vmnet = [a for a in addrs if net is not None and ipaddress.IPv4Address(a) in net]
    said = f"its address on the vmnet is {', '.join(on_vmnet)}" if on_vmnet else \
        f"it has {', '.join(addrs) or 'no IPv4 address'}"
    return fail(f"{rec.name} does not have {host.ip}: {said}",
                f"{network_restart_fix(ctx)} && docker-machine restart {shell(rec.name)}")


@check("forwarding.ip_forward", "IP forwarding in the VM", requires=("machine.running",))
def ip_forward(ctx: Context) -> Result:
    rec = ctx.record()
    value = ctx.vm_firewall().ip_forward  # the VM's one-ssh probe (/proc/sys/net/ipv4/ip_forward)
    if value == "1":
        return ok("net.ipv4.ip_forward = 1")
    fix = f"docker-machine ssh {shell(rec.name)} sudo sysctl -w net.ipv4.ip_forward=1"
    if value == "0":
        return fail("net.ipv4.ip_forward = 0: the VM drops routed traffic to its containers", fix)
    return warn(f"cannot read net.ipv4.ip_forward in the VM (it said {value!r})", fix)


def lab_rule(ctx: Context):
    """(VM facts, the rule labctl keeps for this lab, or None when it cannot be known)."""
    from labctl import vmpath

    facts = ctx.vm_firewall()
    v = ctx.vmnet()
    iface = facts.iface_for(ctx.reservation().ip)
    if iface is None or v is None or v.network is None:
        return facts, None
    return facts, vmpath.Rule(iface, v.network)


@check("forwarding.firewall", "VM firewall lets the desktop's traffic in",
       requires=("machine.running", "reservation.ip"))
def firewall(ctx: Context) -> Result:
    """boot2docker sets FORWARD to DROP when dockerd turns forwarding on; Engine >= 28 drops
    routed traffic to unpublished ports: labctl's DOCKER-USER rule is what lets the desktop in."""
    from labctl import vmpath

    rec = ctx.record()
    fix = f"labctl up {shlex.quote(rec.name)}"
    facts, rule = lab_rule(ctx)
    if not facts.iptables_ok:
        return warn("cannot read the VM's iptables (sudo iptables -S FORWARD gave no policy)",
                    f"docker-machine ssh {shlex.quote(rec.name)} sudo iptables -S")
    if rule is None:  # machine.address reports it (with its fix)
        return skip(f"skipped because {rec.name} does not hold {ctx.reservation().ip} yet, so the "
                    "NIC the desktop uses is unknown")
    iface = rule.iface
    policy = f"FORWARD policy {facts.forward_policy}"
    if facts.raw_drops:
        dests = ", ".join(f"{d} (from anything but {b})" for d, b in facts.raw_drops[:3])
        more = f" and {len(facts.raw_drops) - 3} more" if len(facts.raw_drops) > 3 else ""
        return fail(f"the Engine drops routed traffic to container addresses before any firewall rule "
                    f"(raw PREROUTING: {dests}{more})",
                    f"labctl down {shlex.quote(rec.name)} && labctl up {shlex.quote(rec.name)} "
                    "--engine-opt allow-direct-routing=true  (Engine >= 28.2; or give each network "
                    "-o com.docker.network.bridge.gateway_mode_ipv4=nat-unprotected)")
    where = "bootsync.sh" if facts.init == "boot2docker" else "its docker.service drop-in"
    if facts.has_rule(rule):
        if not facts.persisted(rec.name):
            return warn(f"labctl's {vmpath.CHAIN} rule ({rule.text()}) is there but not in {where}: "
                        "the next boot loses it", fix)
        return ok(f"{policy}; labctl's {vmpath.CHAIN} rule accepts {rule.source} on {iface} "
                  f"(and {where} adds it at boot)")
    if facts.blocked():
        why = (f"{policy} (dockerd turned forwarding on itself)" if facts.forward_policy == "DROP"
               else f"the Engine drops routed traffic to {', '.join(facts.bridge_drops)}")
        return fail(f"{why} and labctl's {vmpath.CHAIN} rule for {rule.source} on {iface} is missing: "
                    "containers answer by IP only on published ports", fix)
    return warn(f"{policy}: routed traffic passes now, but without labctl's {vmpath.CHAIN} rule it "
                "stops when the VM boots with forwarding off", fix)

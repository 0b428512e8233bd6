"""Facts about the host's VMware networking and the plans that change it (vmnets and DHCP
reservations).  Probes only read; planners return Plans; nothing here both reads and writes."""

from __future__ import annotations

import ipaddress
import os
import shlex
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from labctl import fileops
from labctl import state as labstate
from labctl.errors import Conflict, MalformedFile, PreconditionMissing
from labctl.hypervisor.base import ReservationRequest  # noqa: F401  (re-exported)
from labctl.hypervisor.vmware import tools
from labctl.hypervisor.vmware.dhcpd import DhcpdConf, normalize_mac, validate_edit
from labctl.hypervisor.vmware.facts import (  # noqa: F401  (re-exported: lab is the public face)
    dhcpd_files,
    host_networks,
    interface_address,
    read_dhcpd,
    read_networking,
    resolve_vmnet,
    vmnet_rows,
)
from labctl.hypervisor.vmware.networking import NetworkingFile
from labctl.paths import Paths
from labctl.plan import Command, ExecContext, Plan, Run, Step, WriteFile
from labctl.runner import is_root
from labctl.text import encode


def lease_backup_step(paths: Paths, vmnet: int) -> Step:
    lease = paths.hypervisor.leases(vmnet)

    def fn(ctx: ExecContext) -> None:
        if not lease.exists():
            return
        if is_root():
            fileops.backup(lease, ctx.backup_dir)
            return
        from labctl.privileged import run_helper

        copy = run_helper(ctx.runner, "labctl.fileops", ["backup", str(lease), str(ctx.backup_dir)])
        made = copy.stdout.strip()
        if not made or ctx.digest(Path(made)) is None:
            raise PreconditionMissing(f"the backup of {lease} was not made; networking was not "
                                      "restarted", "run the command again with --debug")

    return Step(description=f"back up the vmnet{vmnet} lease file {lease}", fn=fn, privileged=True)


def restart_hint(paths: Paths) -> str:
    return " && ".join(c.show() for c in tools.restart_commands(paths))


def tool_preflight_step(paths: Paths) -> Step:
    """Runs first in a plan that restarts networking: a missing tool must stop the plan before
    any file is written, not after."""
    tool = paths.hypervisor.network_tool

    def fn(ctx: ExecContext) -> None:
        if not os.access(tool, os.X_OK):
            raise PreconditionMissing(
                f"{tool} not found, so networking could not be restarted; nothing was changed",
                f"install {paths.hypervisor.product}, or pass --no-restart and restart it yourself")

    return Step(description=f"check that {tool.name} is installed", fn=fn)


def add_restart(plan: Plan, paths: Paths, vmnet: int, restart: bool) -> None:
    if restart:
        plan.changes.insert(0, tool_preflight_step(paths))
        plan.add(lease_backup_step(paths, vmnet))
        plan.add(Run(tools.restart_commands(paths),
                     description=f"restart {paths.hypervisor.product} networking (running VMs lose "
                                 "their network for a few seconds)"))
    else:
        plan.after.append(f"networking was not restarted; to apply the change run: {restart_hint(paths)}")


def plan_reserve(paths: Paths, req: ReservationRequest, restart: bool = True) -> tuple[Plan, str]:
    conf_path = paths.hypervisor.dhcpd_conf(req.vmnet)
    old, conf = read_dhcpd(paths, req.vmnet)
    new_text, ip = conf.plan_reserve(req.name, req.mac, req.ip)
    plan = Plan(f"reserve {ip} for {req.name} on vmnet{req.vmnet}")
    if new_text == conf.text:
        plan.noops.append(f"{req.name} already has {ip} on vmnet{req.vmnet}; nothing to do")
        return plan, ip
    _refuse_mac_on_other_vmnet(paths, req)
    plan.add(WriteFile(conf_path, old, encode(new_text),
                       description=f"add host {req.name} ({ip}) to {conf_path}",
                       validate=lambda data: _validate(conf, data)))
    plan.after.extend(_kept_notes(conf, req.name, conf_path))
    add_restart(plan, paths, req.vmnet, restart)
    return plan, ip


def _refuse_mac_on_other_vmnet(paths: Paths, req: ReservationRequest) -> None:
    """docker-machine's Fusion driver reads the vmnet*/dhcpd.conf files in lexical order and
    takes the first reservation for the VM's MAC: one left on another vmnet would shadow or be
    shadowed by this one, so the MAC may be reserved on one vmnet only."""
    pattern = "vmnet*/dhcpd.conf" if paths.platform == "darwin" else "vmnet*/dhcpd/dhcpd.conf"
    files: dict[int, bytes] = {}
    for path in sorted(paths.hypervisor.config_dir.glob(pattern)):
        digits = path.relative_to(paths.hypervisor.config_dir).parts[0][len("vmnet"):]
        if not digits.isdigit():
            continue
        try:
            files[int(digits)] = path.read_bytes()
        except OSError:
            continue
    refuse_mac_elsewhere(paths, files, req.vmnet, req.mac)


def refuse_mac_elsewhere(paths: Paths, files: Mapping[int, bytes], vmnet: int, mac: str) -> None:
    """Pure: Conflict if ``mac`` is reserved in the dhcpd.conf of another vmnet (``files``)."""
    mac = normalize_mac(mac)
    for number in sorted(files, key=lambda n: f"vmnet{n}"):
        data = files[number]
        if number == vmnet or mac.encode() not in data.lower():  # cheap test before parsing
            continue
        try:
            other = DhcpdConf.parse(data)
        except MalformedFile:
            continue
        for h in other.hosts:
            if mac in h.macs:
                how = (f"labctl dhcp release {shlex.quote(h.name)} --vmnet vmnet{number}" if h.managed
                       else f"remove host {h.name} from {paths.hypervisor.dhcpd_conf(number)}")
                raise Conflict(f"MAC {mac} is already reserved on vmnet{number} by host {h.name!r} "
                               f"(line {h.line}); docker-machine would read only one of the two",
                               f"release it there first: {how}")


def plan_release(paths: Paths, name: str, vmnet: int, restart: bool = True) -> Plan:
    conf_path = paths.hypervisor.dhcpd_conf(vmnet)
    old, conf = read_dhcpd(paths, vmnet)
    new_text = conf.plan_release(name)
    plan = Plan(f"release {name} on vmnet{vmnet}")
    if new_text == conf.text:
        plan.noops.append(f"no reservation named {name} on vmnet{vmnet}; nothing to do")
        return plan
    plan.add(WriteFile(conf_path, old, encode(new_text),
                       description=f"remove host {name} from {conf_path}",
                       validate=lambda data: _validate(conf, data)))
    plan.after.extend(_kept_notes(conf, name, conf_path))
    add_restart(plan, paths, vmnet, restart)
    return plan


def _kept_notes(conf: DhcpdConf, name: str, path: Path) -> list[str]:
    kept = conf.kept_in_span(name)
    if not kept:
        return []
    return [f"note: {', '.join(kept)} sat between labctl's markers for {name} in {path}; "
            "labctl did not write it, so it stays (only labctl's own block changed)"]


def _validate(old: DhcpdConf, data: bytes) -> None:
    validate_edit(old, data.decode("utf-8", "surrogateescape"))


# ---- vmnets -----------------------------------------------------------------------------------
FIRST_CUSTOM, LAST_CUSTOM = 2, 19


def parse_subnet(cidr: str) -> ipaddress.IPv4Network:
    from labctl import validate

    return validate.vmnet_subnet(cidr)


def pick_vmnet_number(net: NetworkingFile) -> int:
    used = net.in_use
    for n in range(FIRST_CUSTOM, LAST_CUSTOM + 1):
        if n not in used and n != 8:
            return n
    raise Conflict("every custom vmnet (vmnet2-vmnet19) is in use")


def plan_vmnet_create(paths: Paths, requested: str | None, subnet: str,
                      restart: bool = True) -> tuple[Plan, int]:
    """``restart=False`` leaves the networking restart to the caller (``up`` restarts once,
    after the reservation on the new vmnet, and records it as pending until then)."""
    net = parse_subnet(subnet)
    old, _ = read_networking(paths)
    return vmnet_create_plan(paths, old, host_networks(), requested, net, restart=restart,
                             dhcpd_exists=lambda n: paths.hypervisor.dhcpd_conf(n).exists())


def vmnet_create_plan(paths: Paths, old: bytes, host_nets: Iterable[tuple[str, ipaddress.IPv4Network]],
                      requested: str | None, net: ipaddress.IPv4Network, *, restart: bool = True,
                      dhcpd_exists: Callable[[int], bool] = lambda n: False) -> tuple[Plan, int]:
    """Pure: the plan that adds a host-only vmnet with DHCP on ``net`` to the networking file
    ``old`` (``host_nets``: the host's networks, which it must not overlap)."""
    from labctl.paths import parse_vmnet

    nf = NetworkingFile.parse(old)
    number = pick_vmnet_number(nf) if requested in (None, "auto") else parse_vmnet(requested or "")
    existing = nf.get(number)
    plan = Plan(f"host-only vmnet{number} with DHCP on {net}")
    if existing is not None:
        if existing.network == net and existing.kind == "host-only" and existing.dhcp \
                and existing.virtual_adapter:
            plan.noops.append(f"vmnet{number} already is host-only on {net} with DHCP; nothing to do")
            return plan, number
        what = f"bridged to {existing.bridge}" if existing.bridge else f"{existing.kind}, {existing.network}"
        raise Conflict(f"vmnet{number} already exists ({what}); "
                       "labctl does not change a vmnet it did not create",
                       "pick another with --vmnet, or --vmnet auto")
    for other in nf.vmnets.values():
        if other.network and other.network.overlaps(net):
            raise Conflict(f"{net} overlaps {other.name} ({other.network})", "choose another --subnet")
    for ifname, hnet in host_nets:
        if hnet.overlaps(net) and ifname != f"vmnet{number}":
            raise Conflict(f"{net} overlaps the host network {hnet} on {ifname}",
                           "choose another --subnet")
    for key, value in (("DHCP", "yes"), ("HOSTONLY_NETMASK", str(net.netmask)),
                       ("HOSTONLY_SUBNET", str(net.network_address)), ("VIRTUAL_ADAPTER", "yes")):
        nf.set_answer(number, key, value)
    new = nf.dump()
    hv = paths.hypervisor
    plan.add(WriteFile(hv.networking, old, new,
                       description=f"add vmnet{number} (host-only, DHCP, host adapter) to {hv.networking}",
                       validate=lambda data: _check_vmnet(data, number, net)))
    if paths.platform == "linux" and not dhcpd_exists(number):
        plan.add(WriteFile(paths.hypervisor.dhcpd_conf(number), None, render_dhcpd_conf(number, net),
                           description=f"write vmnet{number}'s dhcpd.conf"))
    configure = tools.configure_command(paths)
    if configure:
        plan.add(configure_step(paths, configure))
    if restart:
        plan.add(Run(tools.restart_commands(paths), description=f"restart {hv.product} networking"))
    plan.add(labstate.update_step(paths, f"record vmnet{number} as created by labctl",
                                  record_vmnet(number, net, pending=not restart)))
    return plan, number


def record_vmnet(number: int, net: ipaddress.IPv4Network, pending: bool) -> Callable[[dict], None]:
    """labctl's record of a vmnet it created (``pending``: its networking restart is still due)."""

    def record(state: dict) -> None:
        state["vmnets"][str(number)] = {"created": True, "subnet": str(net)}
        state.setdefault("default_vmnet", number)
        if pending:
            due = [n for n in state.get("restart_pending") or [] if n != number]
            state["restart_pending"] = [*due, number]

    return record


def configure_step(paths: Paths, configure: Command) -> Step:
    """Fusion's ``vmnet-cli --configure`` regenerates every vmnet's dhcpd.conf from the
    networking file.  labctl's reservations are read before it runs and put back after it if
    the regeneration dropped them (and the user is told)."""

    def fn(ctx: ExecContext) -> None:
        before: dict[int, dict[str, str]] = {}
        for n, path in dhcpd_files(paths).items():
            try:
                blocks = DhcpdConf.parse(path.read_bytes()).managed_blocks()
            except (OSError, MalformedFile):
                continue
            if blocks:
                before[n] = blocks
        ctx.runner.run(configure.argv, sudo=configure.sudo, timeout=configure.timeout)
        for n, blocks in before.items():
            restored = restore_blocks(ctx, paths, n, blocks)
            if restored:
                ctx.notices.append(f"vmnet-cli --configure dropped labctl's reservations "
                                   f"{', '.join(restored)} from vmnet{n}; labctl restored them")

    return Step(description="regenerate the vmnet configuration (vmnet-cli --configure), "
                            "keeping labctl's reservations", fn=fn, privileged=True, shown=[configure])


def restore_blocks(ctx: ExecContext, paths: Paths, vmnet: int, blocks: dict[str, str]) -> list[str]:
    """Append labctl blocks that are missing from a vmnet's dhcpd.conf; returns their names."""
    path = paths.hypervisor.dhcpd_conf(vmnet)
    try:
        old = path.read_bytes()
        conf = DhcpdConf.parse(old)
    except (OSError, MalformedFile):
        return []
    missing = [name for name in blocks if name not in conf.managed_blocks()]
    clashing = {h.name for h in conf.hosts if not h.managed}
    missing = [name for name in missing if name not in clashing]
    if not missing:
        return []
    text = conf.text
    for name in missing:
        text += blocks[name]
    validate_edit(conf, text)
    ctx.write(path, encode(text), privileged=True)
    return missing


def _check_vmnet(data: bytes, number: int, net: ipaddress.IPv4Network) -> None:
    v = NetworkingFile.parse(data).get(number)
    if v is None or v.network != net or not v.dhcp:
        raise MalformedFile(f"refusing to write: vmnet{number} would not read back as {net}")


def render_dhcpd_conf(number: int, net: ipaddress.IPv4Network) -> bytes:
    from labctl.render import render

    hosts = list(net.hosts())
    half = len(hosts) // 2
    return render("vmware/dhcpd.conf.j2", vmnet=number, net=net, host_ip=hosts[0],
                  range_start=hosts[half], range_end=hosts[-1]).encode()

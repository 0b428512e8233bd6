"""reservation layer: the lab machine's DHCP reservation in the vmnet's dhcpd.conf."""

from __future__ import annotations

import ipaddress
import shlex

from labctl.doctor.context import Context
from labctl.doctor.core import Result, check, fail, ok, warn
from labctl.doctor.host import configure_fix, network_restart_fix
from labctl.errors import LabctlError
from labctl.validate import shell


def reserve_fix(ctx: Context, mac: str | None = None, ip: str | None = None) -> str:
    rec = ctx.record()
    return (f"labctl dhcp reserve {shell(rec.name)} --mac {mac or rec.mac} --ip {ip or rec.ip or 'auto'} "
            f"--vmnet vmnet{ctx.vmnet_number()}")


@check("reservation.conf", "vmnet dhcpd.conf readable", requires=("vmnet.exists",))
def conf(ctx: Context) -> Result:
    path = ctx.paths.hypervisor.dhcpd_conf(ctx.vmnet_number())
    try:
        c = ctx.dhcpd()
    except LabctlError as exc:
        fix = exc.remedy
        regenerate = configure_fix(ctx)
        if fix is None and regenerate:
            fix = f"let Fusion regenerate it: {regenerate}"
        return fail(exc.message, fix or f"restore {path} from a backup (labctl keeps them in "
                                        f"{ctx.paths.backup_dir}) or let VMware regenerate it")
    sub = c.subnet
    if sub is None:
        return fail(f"{path} declares no subnet", f"restore {path} from {ctx.paths.backup_dir}")
    ranges = ", ".join(f"{lo}-{hi}" for lo, hi in sub.ranges) or "no dynamic range"
    return ok(f"{path}: subnet {sub.network}, dynamic {ranges}, {len(c.hosts)} host block(s)")


@check("reservation.protected", "DO-NOT-MODIFY section intact", requires=("reservation.conf",))
def protected(ctx: Context) -> Result:
    c = ctx.dhcpd()
    path = ctx.paths.hypervisor.dhcpd_conf(ctx.vmnet_number())
    if c.has_protected_section:
        return ok("its End line is present; reservations follow it")
    regenerate = configure_fix(ctx)
    if regenerate:
        fix = (f"sudo cp {shlex.quote(str(path))} {shlex.quote(str(path) + '.broken')} && "
               f"{regenerate} && {network_restart_fix(ctx)}")
    else:
        fix = ("let VMware rewrite it: open the Virtual Network Editor (sudo vmware-netcfg), "
               "apply, then restore your reservations with labctl dhcp reserve")
    return fail(f"{path} has no '{ctx.paths.hypervisor.protected_marker}' line: VMware's section is "
                "damaged and labctl will not edit the file", fix)


@check("reservation.exists", "Reservation for the lab machine",
       requires=("reservation.conf", "lab.machine"))
def exists(ctx: Context) -> Result:
    rec = ctx.record()
    host = ctx.reservation()
    if host is None:
        return fail(f"vmnet{ctx.vmnet_number()}'s dhcpd.conf has no reservation for {rec.name} "
                    f"({rec.mac})", reserve_fix(ctx))
    owner = "labctl's" if host.managed else "not labctl's"
    detail = f"host {host.name} (line {host.line}, {owner}): {host.mac} → {host.ip}"
    if host.ip != rec.ip:
        return warn(f"{detail}, but labctl recorded {rec.ip} for {rec.name}",
                    f"labctl up {shell(rec.name)}  (or: {reserve_fix(ctx, ip=rec.ip)})")
    return ok(detail)


def vm_nic(ctx: Context):
    """The VM's NIC on the lab vmnet in the .vmx (the recorded index, else the one whose MAC
    or vnet matches)."""
    rec = ctx.record()
    nics = [n for n in ctx.vmx().nics() if n.present]
    if rec.nic_index is not None:
        return next((n for n in nics if n.index == rec.nic_index), None)
    return next((n for n in nics if n.address == rec.mac), None) or \
        next((n for n in nics if n.vnet == f"vmnet{rec.vmnet}"), None)


@check("reservation.mac", "Reservation MAC matches the VM's NIC", requires=("reservation.exists",))
def mac(ctx: Context) -> Result:
    rec = ctx.record()
    host = ctx.reservation()
    if not rec.vmx:
        if host.mac == rec.mac:
            return ok(f"{host.mac} (labctl's record; no .vmx recorded to compare with)")
        return fail(f"the reservation has {host.mac}, labctl recorded {rec.mac}",
                    reserve_fix(ctx, mac=rec.mac, ip=host.ip))
    nic = vm_nic(ctx)
    if nic is None:
        which = f"ethernet{rec.nic_index}" if rec.nic_index is not None else f"a NIC on vmnet{rec.vmnet}"
        return fail(f"{rec.vmx} has no {which}", f"labctl up {shell(rec.name)}")
    if nic.address is None:
        return warn(f"{nic.key} has no MAC yet in {rec.vmx} (VMware generates it at first boot)",
                    f"docker-machine start {shell(rec.name)}; then labctl doctor {shell(rec.name)}")
    if nic.address not in host.macs:
        return fail(f"the reservation has {host.mac} but the VM's {nic.key} is {nic.address}",
                    reserve_fix(ctx, mac=nic.address, ip=host.ip))
    return ok(f"{host.mac} = {nic.key} in {rec.vmx}")


@check("reservation.ip", "Reserved IP usable", requires=("reservation.exists",))
def ip_usable(ctx: Context) -> Result:
    c = ctx.dhcpd()
    host = ctx.reservation()
    try:
        addr = ipaddress.IPv4Address(host.ip or "")
    except ValueError:
        return fail(f"host {host.name} has no valid fixed-address ({host.ip!r})",
                    reserve_fix(ctx, mac=host.mac, ip=str(c.pick_free_ip())))
    try:
        c.check_ip(addr)  # subnet, network/broadcast, .1/.2, dynamic range
    except LabctlError as exc:
        return fail(exc.message, reserve_fix(ctx, mac=host.mac, ip=_free_ip(ctx)))
    others = [h for h in c.hosts if h is not host and str(addr) in h.ips]
    if others:
        names = ", ".join(f"{h.name} (line {h.line})" for h in others)
        return fail(f"{addr} is also reserved by {names}",
                    reserve_fix(ctx, mac=host.mac, ip=_free_ip(ctx)))
    sub = c.subnet
    return ok(f"{addr} in {sub.network if sub else '?'}, outside the dynamic range, not shared")


def _free_ip(ctx: Context) -> str:
    try:
        return str(ctx.dhcpd().pick_free_ip())
    except LabctlError:
        return "auto"


@check("reservation.docker_machine", "docker-machine can read the reservation",
       requires=("reservation.exists",))
def docker_machine_reads(ctx: Context) -> Result:
    c = ctx.dhcpd()
    host = ctx.reservation()
    seen = c.docker_machine_lookup(host.mac or "")
    if seen == host.ip:
        return ok(f"its patterns find {host.mac} → {seen}")
    if seen is None:
        what = ("docker-machine's patterns (`host NAME {`, `hardware ethernet MAC;`, "
                "`fixed-address IP;` each on its own line, `}` at column 0) do not match the block")
    else:
        what = f"docker-machine's patterns read {seen} for {host.mac}, not {host.ip}"
    name = ctx.record().name
    fix = (f"labctl dhcp release {shell(name)} --vmnet vmnet{ctx.vmnet_number()} && "
           f"{reserve_fix(ctx, ip=host.ip)}"
           if host.managed else
           f"rewrite host {host.name} (line {host.line}) in that shape, or remove it and run: "
           f"{reserve_fix(ctx, ip=host.ip)}")
    return fail(what, fix)

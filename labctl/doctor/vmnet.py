"""vmnet layer: the lab vmnet in the networking file, the host adapter and VMware's services."""

from __future__ import annotations

import contextlib
import ipaddress
import shlex

from labctl.doctor.context import Context
from labctl.doctor.core import Result, check, fail, ok, warn
from labctl.doctor.host import configure_fix, network_restart_fix
from labctl.errors import CommandTimeout, LabctlError
from labctl.validate import shell


def _set_answer_fix(ctx: Context, key: str, value: str) -> str:
    """A pasteable edit of one networking answer, then regenerate and restart."""
    v = ctx.vmnet()
    n = v.number
    path = shlex.quote(str(ctx.paths.hypervisor.networking))
    line = f"answer VNET_{n}_{key} {value}"
    if key in v.answers:
        inplace = "-i ''" if ctx.platform == "darwin" else "-i"
        edit = f"sudo sed {inplace} 's/^answer VNET_{n}_{key} .*/{line}/' {path}"
    else:
        edit = f"echo '{line}' | sudo tee -a {path}"
    regenerate = configure_fix(ctx)
    configure = f" && {regenerate}" if regenerate else ""
    return f"{edit}{configure} && {network_restart_fix(ctx)}"


def create_fix(ctx: Context, n: int | None) -> str:
    """`labctl vmnet create` with the subnet labctl recorded (or the machine's /24)."""
    subnet = "192.168.99.0/24"
    try:
        st = ctx.state()
        rec = ctx.target().record
    except LabctlError:
        st, rec = {}, None
    known = (st.get("vmnets") or {}).get(str(n)) if n is not None else None
    if isinstance(known, dict) and known.get("subnet"):
        subnet = str(known["subnet"])
    elif rec is not None and rec.ip:
        with contextlib.suppress(ValueError):
            subnet = str(ipaddress.IPv4Network(f"{rec.ip}/24", strict=False))
    where = f" --vmnet vmnet{n}" if n is not None else ""
    return f"labctl vmnet create --subnet {subnet}{where}"


@check("vmnet.exists", "Lab vmnet exists", requires=("host.vmware",))
def exists(ctx: Context) -> Result:
    try:
        n = ctx.vmnet_number()
    except LabctlError as exc:
        return fail(f"no lab vmnet: {exc.message}", exc.remedy or create_fix(ctx, None))
    v = ctx.vmnet()
    if v is None:
        have = ", ".join(f"vmnet{k}" for k in ctx.networking().vmnets) or "none"
        return fail(f"vmnet{n} is not in {ctx.paths.hypervisor.networking} (it has {have})",
                    create_fix(ctx, n))
    label = f" \"{v.display_name}\"" if v.display_name else ""
    return ok(f"vmnet{n}{label}: {v.kind}, {v.network or 'no subnet'}")


@check("vmnet.hostonly", "Lab vmnet is host-only", requires=("vmnet.exists",))
def hostonly(ctx: Context) -> Result:
    v = ctx.vmnet()
    if v.kind == "host-only":
        return ok(f"{v.name} is host-only ({v.network})")
    return fail(f"{v.name} is {v.kind}, not host-only: the host cannot route to containers through it",
                "create a host-only vmnet for the lab: labctl vmnet create --subnet 192.168.99.0/24")


@check("vmnet.dhcp", "DHCP on the lab vmnet", requires=("vmnet.exists",))
def dhcp(ctx: Context) -> Result:
    v = ctx.vmnet()
    if v.dhcp:
        return ok(f"{v.name} hands out addresses by DHCP")
    return fail(f"DHCP is off on {v.name} (\"Provide addresses on this network via DHCP\")",
                _set_answer_fix(ctx, "DHCP", "yes"))


@check("vmnet.adapter", "Host connected to the lab vmnet", requires=("vmnet.exists",))
def adapter(ctx: Context) -> Result:
    v = ctx.vmnet()
    if v.virtual_adapter:
        return ok(f"{v.name} has a host virtual adapter")
    return fail(f"{v.name} has no host adapter (\"Connect the host Mac/PC to this network\" is off)",
                _set_answer_fix(ctx, "VIRTUAL_ADAPTER", "yes"))


@check("vmnet.interface", "Host interface up with the vmnet address",
       requires=("vmnet.adapter", "vmnet.hostonly"))
def interface(ctx: Context) -> Result:
    """Found by the vmnet's subnet: vmnetN, or on macOS 11+ a bridge10x that Fusion creates
    when the first VM on the vmnet starts (and removes when the last one stops)."""
    v = ctx.vmnet()
    want = v.host_address
    found = ctx.host_adapter()
    if found is None:
        rec = ctx.target().record
        running = False
        if rec is not None:
            with contextlib.suppress(LabctlError):
                running = ctx.machine_status() == "Running"
        if ctx.bridge_adapters() and not running:
            start = f"docker-machine start {shell(rec.name)}" if rec is not None else "start a VM on it"
            return warn(f"{v.name}'s host adapter (a bridge10x interface for {v.network}) is not "
                        "up yet (created when a VM starts)",
                        f"nothing to repair: it appears when a VM on {v.name} runs ({start})")
        why = (f"{rec.name} runs, yet " if running and rec is not None else "")
        return fail(f"{why}the host has no interface on {v.name} ({v.network}) with an IPv4 "
                    "address (VMware networking is not running)", network_restart_fix(ctx))
    if want is not None and found.address != str(want):
        return fail(f"{found.name} has {found.address} on {v.name}, expected {want} (.1 of "
                    f"{v.network})", network_restart_fix(ctx))
    which = "" if found.name == v.name else f" ({v.name}'s host adapter)"
    return ok(f"{found.name}{which} is up with {found.address}")


@check("vmnet.services", "VMware network services running",
       requires=("vmnet.exists", "host.network_tool"),
       timeout_fix="VMware's network tool hangs; restart VMware networking (or reboot the host)")
def services(ctx: Context) -> Result:
    n = ctx.vmnet_number()
    v = ctx.vmnet()
    tool = ctx.paths.hypervisor.network_tool
    try:
        answer, status = ctx.network_status()
    except CommandTimeout:
        return fail(f"`{tool.name} --status` did not answer within {ctx.command_timeout:g} s",
                    f"VMware's network services hang; restart them: {network_restart_fix(ctx)}")
    mine = status.vmnets.get(n)
    if mine is None:
        last = (answer.stderr or answer.stdout).strip().splitlines()
        said = f" ({last[-1]})" if last else f" (exit status {answer.returncode})"
        return fail(f"`{tool.name} --status` reports nothing for vmnet{n}{said}",
                    network_restart_fix(ctx))
    down = []
    if v.dhcp and not mine.dhcp:
        down.append("DHCP service is not running")
    if v.virtual_adapter and mine.adapter is False:
        down.append("host-only adapter is disabled")
    if v.nat and not mine.nat:
        down.append("NAT service is not running")
    if down:
        return fail(f"vmnet{n}: " + ", ".join(down), network_restart_fix(ctx))
    running = [w for w, on in (("DHCP", mine.dhcp), ("adapter", mine.adapter), ("NAT", mine.nat)) if on]
    return ok(f"vmnet{n}: {', '.join(running) or 'nothing'} running")

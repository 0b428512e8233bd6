"""Host layer: the platform, VMware Fusion/Workstation and its tools."""

from __future__ import annotations

import shlex

from labctl.doctor.context import Context
from labctl.doctor.core import Result, check, fail, ok, warn


def arm_alternative(ctx: Context, name: str) -> str:
    return "boot2docker is x86-only; " + ctx.paths.hypervisor.adopt_hint(name)


def _q(path: object) -> str:
    return shlex.quote(str(path))


def configure_fix(ctx: Context) -> str | None:
    """The command that regenerates the per-vmnet files from the networking file (Fusion's
    ``vmnet-cli --configure``), to paste with sudo; None where there is none."""
    c = ctx.paths.hypervisor.configure_command()
    return None if c is None else ("sudo " if c.sudo else "") + shlex.join(c.argv)


def network_restart_fix(ctx: Context) -> str:
    """The restart ``up`` runs (the network tool adapter's commands), to paste with sudo."""
    return " && ".join(("sudo " if c.sudo else "") + shlex.join(c.argv)
                       for c in ctx.paths.hypervisor.restart_commands())


def version_tuple(text: str | None) -> tuple[int, ...]:
    from labctl.hostinfo import version_tuple as vt

    return vt(text)


@check("host.platform", "Platform")
def platform_ok(ctx: Context) -> Result:
    product = ctx.paths.hypervisor.product
    return ok(f"{ctx.os_description()} on {ctx.arch()} ({product})")


@check("host.arch", "CPU can run the lab VM")
def arch_ok(ctx: Context) -> Result:
    from labctl.hostinfo import is_arm

    arch = ctx.arch()
    if not is_arm(arch):
        return ok(arch)
    rec = ctx.target().record
    if rec is not None and rec.driver == "generic":
        return ok(f"{arch}: {rec.name} is an adopted VM (docker-machine's generic driver)")
    where = "Apple Silicon" if ctx.platform == "darwin" else f"an {arch} host"
    return fail(f"{where}: boot2docker and docker-machine's VMware drivers cannot run here",
                arm_alternative(ctx, rec.name if rec is not None else "lab"))


@check("host.vmware", "VMware installed")
def vmware_installed(ctx: Context) -> Result:
    product = ctx.paths.hypervisor.product
    where = ctx.hypervisor_install()
    if where is None:
        looked = " or ".join(ctx.paths.hypervisor.install_places)
        return fail(f"{product} is not installed (looked for {looked})",
                    f"install {product} from {ctx.paths.hypervisor.product_url}")
    version = ctx.hypervisor_version()
    return ok(f"{product} {version or '(version unreadable)'} at {where}")


@check("host.network_tool", "VMware network tool present", requires=("host.vmware",))
def network_tool(ctx: Context) -> Result:
    tool = ctx.paths.hypervisor.network_tool
    if ctx.executable(str(tool)):
        return ok(str(tool))
    return fail(f"{tool.name} not found or not executable at {tool}",
                f"reinstall {ctx.paths.hypervisor.product}; {tool.name} ships with it")


@check("host.vmrun", "vmrun present", requires=("host.vmware",))
def vmrun(ctx: Context) -> Result:
    path = ctx.paths.hypervisor.vmrun
    if ctx.executable(str(path)):
        return ok(str(path))
    if ctx.platform == "darwin":
        fix = ("reinstall VMware Fusion (vmrun is in VMware Fusion.app/Contents/Library), or "
               "put it on PATH: sudo ln -s '/Applications/VMware Fusion.app/Contents/Library/vmrun' "
               "/usr/local/bin/vmrun")
    else:
        fix = "reinstall VMware Workstation (it installs /usr/bin/vmrun)"
    return fail(f"vmrun not found at {path}", fix)


@check("host.dhcp_server", "vmnet DHCP server", requires=("host.vmware",))
def dhcp_server(ctx: Context) -> Result:
    """Fusion 12.0/12.1 on macOS 11 handed DHCP to Apple's bootpd (/var/db/dhcpd_leases)."""
    if ctx.platform != "darwin":
        return ok("VMware's vmnet-dhcpd reads the vmnet's dhcpd.conf")
    fusion = ctx.hypervisor_version()
    macos = ctx.macos_version()
    if fusion is None or macos is None:
        return warn(f"cannot tell which DHCP server applies (Fusion {fusion or '?'}, macOS "
                    f"{macos or '?'}); Fusion 12.0/12.1 on macOS 11 use Apple's instead of VMware's",
                    "check the version in VMware Fusion > About VMware Fusion; "
                    "12.2 or later use VMware's DHCP server")
    if version_tuple(fusion)[:2] in ((12, 0), (12, 1)) and version_tuple(macos)[:1] == (11,):
        return warn(f"Fusion {fusion} on macOS {macos} uses Apple's DHCP server (bootpd, leases "
                    f"in {ctx.paths.hypervisor.apple_leases}); it ignores reservations in dhcpd.conf",
                    "upgrade to Fusion 12.2 or later (VMware's DHCP server again), or reserve the "
                    "address in Apple's /etc/bootptab instead")
    return ok(f"VMware's vmnet-dhcpd (Fusion {fusion} on macOS {macos}) reads dhcpd.conf")


def uses_apple_dhcp(ctx: Context) -> bool:
    from labctl.hostinfo import uses_apple_dhcp as apple

    return ctx.platform == "darwin" and apple(ctx.hypervisor_version(), ctx.macos_version())

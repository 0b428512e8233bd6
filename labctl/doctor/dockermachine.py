"""docker-machine layer: the binary, its version and the VMware driver."""

from __future__ import annotations

from labctl.doctor.context import Context
from labctl.doctor.core import Result, check, fail, ok, warn
from labctl.errors import CommandTimeout, LabctlError

DRIVER_RELEASES = "https://github.com/machine-drivers/docker-machine-driver-vmware/releases"


def _dm_install(ctx: Context) -> str:
    from labctl.machine import install_hint

    return install_hint(ctx.platform, ctx.arch())


def _driver_install(ctx: Context) -> str:
    os_name = "darwin" if ctx.platform == "darwin" else "linux"
    return (f"download docker-machine-driver-vmware_{os_name}_amd64 from {DRIVER_RELEASES} and "
            "install it on PATH: sudo install docker-machine-driver-vmware_* "
            "/usr/local/bin/docker-machine-driver-vmware")


@check("docker-machine.installed", "docker-machine installed")
def installed(ctx: Context) -> Result:
    exe = ctx.docker_machine()
    if exe is None:
        return fail(f"docker-machine is not installed (looked on PATH and at {ctx.paths.docker_machine})",
                    _dm_install(ctx))
    try:
        version = ctx.docker_machine_version()
    except CommandTimeout:
        raise
    except LabctlError as exc:
        return warn(f"{exe} does not report its version: {exc.message}", f"reinstall it: {_dm_install(ctx)}")
    return ok(f"{version} at {exe}")


@check("docker-machine.driver", "docker-machine VMware driver",
       requires=("docker-machine.installed",))
def driver(ctx: Context) -> Result:
    from labctl.machine import FUSION, PLUGIN_BINARY, VMWARE

    name = ctx.driver()
    if name == FUSION:
        if ctx.platform == "darwin":
            return ok("vmwarefusion (built into docker-machine on macOS)")
        return fail("the vmwarefusion driver is macOS-only; docker-machine answers "
                    '"not supported on this platform" here',
                    f"use the vmware plugin driver (-d vmware): {_driver_install(ctx)}")
    if name == VMWARE:
        exe = ctx.which(PLUGIN_BINARY)
        if exe is None:
            return fail(f"{PLUGIN_BINARY} (driver vmware) is not on PATH",
                        _driver_install(ctx))
        return ok(f"vmware plugin at {exe}")
    if name == "generic":
        return ok("generic (built into docker-machine): a VM labctl adopted, provisioned over SSH")
    return warn(f"the lab machine uses driver {name!r}, which labctl does not know",
                "recreate the machine with -d vmwarefusion (macOS) or -d vmware")

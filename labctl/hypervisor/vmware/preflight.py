"""What cannot work on this desktop, refused before ``up`` changes anything.

Each refusal is a :class:`PreconditionMissing` (exit 3): one line that says what and why, and
the fix.  ``up``'s preflight calls :func:`refuse_unworkable` first, before it even looks for
docker-machine, so a refused run leaves every file as it was.

* **arm64** (Apple Silicon, or an arm64 Linux desktop): docker-machine's ``vmwarefusion``
  driver and the ``vmware`` plugin make boot2docker VMs, and boot2docker is x86-only (its
  last release, v19.03.12, has no arm64 image).  The way that works is to adopt a Linux VM the
  user installed (``labctl up NAME --adopt VM.vmx``: docker-machine's generic driver).
* **Fusion 12.0/12.1 on macOS 11** hand out addresses with Apple's DHCP server (bootpd,
  ``/var/db/dhcpd_leases``), which ignores the reservations in VMware's ``dhcpd.conf`` that
  the whole lab rests on; Fusion 12.2 went back to VMware's own DHCP server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from labctl import hostinfo
from labctl.errors import PreconditionMissing
from labctl.paths import Paths

if TYPE_CHECKING:
    from labctl.labspec import MachineSpec

BOOT2DOCKER_DRIVERS = ("vmwarefusion", "vmware")


def adopt_hint(name: str) -> str:
    return (f"install an arm64 Ubuntu or Debian VM in Fusion, then adopt it: "
            f"labctl up {name} --adopt PATH/TO/VM.vmx")


def refuse_unworkable(paths: Paths, machines: Iterable[MachineSpec],
                      env: Mapping[str, str] | None = None) -> None:
    """Raise PreconditionMissing for the first machine that cannot work here."""
    machines = list(machines)
    arch = hostinfo.machine_arch(env)
    if hostinfo.is_arm(arch):
        for m in machines:
            if not m.adopting and m.driver in BOOT2DOCKER_DRIVERS:
                where = f"this Mac has Apple Silicon ({arch})" if paths.platform == "darwin" \
                    else f"this host's CPU is {arch}"
                raise PreconditionMissing(
                    f"{where}: the {m.driver} driver makes a boot2docker VM, which is "
                    f"x86-only, so {m.name} cannot be created; nothing was changed",
                    adopt_hint(m.name))
    if paths.platform == "darwin" and machines:
        fusion = paths.hypervisor.version()
        macos = hostinfo.macos_version(paths, env)
        if hostinfo.uses_apple_dhcp(fusion, macos):
            raise PreconditionMissing(
                f"VMware Fusion {fusion} on macOS {macos} hands out addresses with Apple's DHCP "
                "server, which ignores the reservations labctl writes to dhcpd.conf; nothing was "
                "changed",
                "upgrade to VMware Fusion 12.2 or later (it uses VMware's DHCP server again)")

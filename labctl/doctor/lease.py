"""lease layer: does the VM hold its fixed address?

ISC dhcpd (and so vmnet-dhcpd) never writes fixed-address assignments to its leases file, so
the file can only show that the VM still holds a *dynamic* lease (from before the
reservation, or because the reservation does not match).  Apple's bootpd (Fusion 12.0/12.1
on macOS 11) does record them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from labctl.doctor.context import Context
from labctl.doctor.core import Result, check, fail, ok, warn
from labctl.doctor.host import network_restart_fix, uses_apple_dhcp
from labctl.errors import LabctlError
from labctl.validate import shell


@check("lease.fixed_ip", "VM holds the reserved IP",
       requires=("reservation.mac", "reservation.ip", "vmnet.services"))
def fixed_ip(ctx: Context) -> Result:
    rec = ctx.record()
    host = ctx.reservation()
    mac = host.mac or rec.mac or ""
    apple = uses_apple_dhcp(ctx)
    hv = ctx.paths.hypervisor
    path = hv.apple_leases if apple else hv.leases(ctx.vmnet_number())
    renew = (f"{network_restart_fix(ctx)} && docker-machine restart {shell(rec.name)}")
    try:
        leases = ctx.leases(path)
    except LabctlError as exc:
        if not path.exists():
            return warn(f"no leases file at {path}: the vmnet's DHCP server has not served yet",
                        network_restart_fix(ctx))
        return warn(exc.message, exc.remedy or f"sudo labctl doctor {shell(rec.name)}")
    lease = ctx.paths.hypervisor.latest_lease(leases, mac)
    now = datetime.now(UTC)
    if lease is None:
        if apple:
            return warn(f"{path} has no lease for {mac}: the VM has not asked Apple's DHCP server",
                        renew)
        return ok(f"no dynamic lease for {mac} in {path} (fixed addresses are not recorded there)")
    until = f" until {lease.ends:%Y-%m-%d %H:%M} UTC" if lease.ends else ""
    if lease.ip == host.ip:
        return ok(f"{path} shows {mac} at {lease.ip}{until}")
    if lease.active(now):
        return fail(f"the VM still holds a dynamic lease on {lease.ip}{until}, not {host.ip}",
                    renew)
    return ok(f"its last dynamic lease ({lease.ip}) expired{until.replace(' until', '')}; "
              "fixed addresses are not recorded in the leases file")

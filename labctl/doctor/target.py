"""The lab layer: which machine and vmnet doctor examines (labctl's own records)."""

from __future__ import annotations

from labctl.doctor.context import Context
from labctl.doctor.core import Result, check, fail, ok, skip
from labctl.validate import shell


@check("lab.machine", "Lab machine known to labctl")
def machine_record(ctx: Context) -> Result:
    t = ctx.target()
    if t.machine is None:
        if len(t.machines) > 1:
            return fail(f"labctl knows several machines ({', '.join(t.machines)})",
                        f"name one: labctl doctor {shell(t.machines[0])}")
        return skip("labctl has no machine recorded yet (`labctl up NAME` creates one); "
                    "only the host and the vmnet are checked")
    rec = t.record
    if rec is None:
        known = f" (it knows {', '.join(t.machines)})" if t.machines else ""
        return fail(f"labctl has no record of a machine named {t.machine}{known}",
                    f"labctl up {shell(t.machine)}")
    if rec.missing:
        return fail(f"labctl's record of {rec.name} lacks {', '.join(rec.missing)}",
                    f"labctl up {shell(rec.name)}")
    nic = f", {rec.nic} NIC" if rec.nic else ""
    nic += f" ethernet{rec.nic_index}" if rec.nic_index is not None else ""
    return ok(f"{rec.name}: vmnet{rec.vmnet}, {rec.mac} → {rec.ip}{nic}")

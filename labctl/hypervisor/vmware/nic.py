"""The dedicated NIC: a second adapter ``ethernet1`` on a host-only vmnet with a static MAC.

Pure planners over a parsed :class:`~labctl.hypervisor.vmware.vmx.Vmx`: they return the new file bytes
(the caller turns them into a ``WriteFile`` change, diff included, applied while the VM is
stopped).  Lossless: adding appends the adapter's lines and leaves every other byte as it
was; removing deletes exactly the adapter's lines, so add-then-remove gives the original
bytes back (a missing final newline and CRLF line ends included).

An ``ethernet1`` is labctl's when it is a static adapter whose address is the MAC labctl
derives from the machine name; anything else there is refused, never overwritten.
"""

from __future__ import annotations

import hashlib
import re

from labctl.errors import Conflict, InvalidInput
from labctl.hypervisor.vmware.vmx import Vmx
from labctl.text import encode

#: VMware's range for manually assigned (static) addresses: 00:50:56:00:00:00-00:50:56:3F:FF:FF
STATIC_PREFIX = "00:50:56"
_MAC_RE = re.compile(r"^00:50:56:([0-3][0-9a-f]):([0-9a-f]{2}):([0-9a-f]{2})$")
DEFAULT_INDEX = 1


def mac_for(name: str) -> str:
    """A MAC in VMware's static range derived from the machine name (same name, same MAC)."""
    digest = hashlib.sha256(f"labctl-nic:{name}".encode()).digest()
    value = int.from_bytes(digest[:3], "big") & 0x3FFFFF  # 22 bits: 00:00:00-3f:ff:ff
    return f"{STATIC_PREFIX}:{value >> 16:02x}:{(value >> 8) & 0xFF:02x}:{value & 0xFF:02x}"


def check_static_mac(mac: str) -> str:
    mac = mac.strip().lower()
    if not _MAC_RE.match(mac):
        raise InvalidInput(f"{mac!r} is not in VMware's static MAC range 00:50:56:00:00:00-00:50:56:3f:ff:ff")
    return mac


def nic_settings(vmnet: int, mac: str, vnet: str | None = None) -> list[tuple[str, str]]:
    """The adapter's keys (without the ``ethernetN.`` prefix) in the order they are written."""
    if not 1 <= vmnet <= 255 or vmnet == 8:
        raise InvalidInput(f"vmnet{vmnet} cannot carry the dedicated NIC",
                           "use a host-only vmnet such as vmnet2 (vmnet0 is bridged, vmnet8 is NAT)")
    return [
        ("present", "TRUE"),
        ("connectionType", "custom"),
        ("vnet", vnet or f"vmnet{vmnet}"),
        ("virtualDev", "vmxnet3"),
        ("addressType", "static"),
        ("address", check_static_mac(mac)),
    ]


def _key(line: str) -> str | None:
    m = re.match(r'^\s*([A-Za-z0-9_.:\-]+)\s*=', line)
    return m.group(1).lower() if m else None


def _adapter_lines(vmx: Vmx, index: int) -> list[int]:
    prefix = f"ethernet{index}."
    return [i for i, line in enumerate(vmx.lines) if (_key(line) or "").startswith(prefix)]


def nic_state(vmx: Vmx, mac: str, index: int = DEFAULT_INDEX) -> str:
    """``absent`` (no ethernetN lines), ``ours`` (static, our MAC) or ``foreign``."""
    if not _adapter_lines(vmx, index):
        return "absent"
    p = f"ethernet{index}."
    if ((vmx.get(p + "addressType") or "").lower() == "static"
            and (vmx.get(p + "address") or "").lower() == check_static_mac(mac)):
        return "ours"
    return "foreign"


def _eol(vmx: Vmx) -> str:
    crlf = sum(1 for line in vmx.lines if line.endswith("\r\n"))
    return "\r\n" if crlf and crlf * 2 >= len(vmx.lines) else "\n"


def plan_nic(vmx: Vmx, vmnet: int, mac: str, *, index: int = DEFAULT_INDEX, vnet: str | None = None) -> bytes:
    """The .vmx bytes with labctl's ``ethernet<index>`` on ``vmnet<vmnet>`` (unchanged bytes if it
    is already there as wanted).  Refuses if that adapter exists and is not labctl's."""
    settings = nic_settings(vmnet, mac, vnet)
    p = f"ethernet{index}."
    state = nic_state(vmx, mac, index)
    if state == "foreign":
        current = vmx.nic(index)
        what = (f"{current.connection_type or '?'} adapter"
                f"{' ' + current.address if current and current.address else ''}") if current else "adapter"
        raise Conflict(
            f"the VM already has ethernet{index} ({what}) that labctl did not add",
            "use --nic existing to reserve the VM's own NIC, or remove that adapter in VMware first")
    out = Vmx("".join(vmx.lines))
    if state == "ours":
        for key, value in settings:
            if out.get(p + key) != value:
                out.set(p + key, value)
        return out.dump()
    eol = _eol(vmx)
    block = [f'{p}{key} = "{value}"' for key, value in settings]
    text = "".join(vmx.lines)
    if text == "" or text.endswith("\n"):
        text += eol.join(block) + eol
    else:  # keep "no final newline": the block's last line goes without one
        text += eol + eol.join(block)
    return encode(text)


def plan_nic_removal(vmx: Vmx, mac: str, *, index: int = DEFAULT_INDEX) -> bytes:
    """The .vmx bytes without labctl's ``ethernet<index>`` (every ``ethernet<index>.*`` line,
    also those VMware added to it).  Unchanged bytes if it is absent; refuses a foreign one."""
    state = nic_state(vmx, mac, index)
    if state == "absent":
        return vmx.dump()
    if state == "foreign":
        raise Conflict(f"ethernet{index} in this .vmx was not added by labctl; leaving it alone")
    drop = set(_adapter_lines(vmx, index))
    lines = [line for i, line in enumerate(vmx.lines) if i not in drop]
    last = len(vmx.lines) - 1
    if last in drop and not vmx.lines[last].endswith("\n") and lines:
        lines[-1] = lines[-1].rstrip("\r\n")  # the file had no final newline: restore that
    return encode("".join(lines))

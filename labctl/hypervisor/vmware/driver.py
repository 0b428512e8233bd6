"""VMware Fusion (macOS) and Workstation (Linux) behind :class:`labctl.hypervisor.base.Hypervisor`:
where their files and tools are, and thin delegation to the parsers, planners and adapters of
this package.  Nothing outside ``labctl/hypervisor/vmware`` imports these modules; they get a
:class:`VMware` from :func:`labctl.hypervisor.get` (``paths.hypervisor``)."""

from __future__ import annotations

import ipaddress
import plistlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labctl.hypervisor.base import Hypervisor, NetworkTable, ReservationBook, ReservationRequest, VmConfig

if TYPE_CHECKING:
    from labctl.labspec import MachineSpec
    from labctl.plan import Command, Plan, Step

FUSION_PREFS = "/Library/Preferences/VMware Fusion"
FUSION_APP = "/Applications/VMware Fusion.app"
FUSION_LIB = f"{FUSION_APP}/Contents/Library"
WORKSTATION_CONFIG = "/etc/vmware/config"
WORKSTATION_DIRS = ("/usr/lib/vmware", "/usr/bin/vmware")


class VMware(Hypervisor):
    name = "vmware"

    @property
    def fusion(self) -> bool:
        return self.paths.platform == "darwin"

    # ---- who it is ------------------------------------------------------------------------------
    @property
    def product(self) -> str:
        return "VMware Fusion" if self.fusion else "VMware Workstation"

    @property
    def product_url(self) -> str:
        from labctl.hypervisor.vmware.facts import VMWARE_URL

        return VMWARE_URL

    def version(self) -> str | None:
        """Fusion: Info.plist's CFBundleShortVersionString; Workstation: /etc/vmware/config."""
        if self.fusion:
            plist = self.paths.host(FUSION_APP) / "Contents" / "Info.plist"
            try:
                with plist.open("rb") as fh:
                    data = plistlib.load(fh)
            except (OSError, plistlib.InvalidFileException, ValueError):
                return None
            v = data.get("CFBundleShortVersionString") if isinstance(data, dict) else None
            return str(v) if v else None
        from labctl.hypervisor.vmware.vmx import Vmx

        try:
            conf = Vmx.parse(self.paths.host(WORKSTATION_CONFIG).read_bytes())
        except OSError:
            return None
        return conf.get("product.version") or conf.get("workstation.product.version")

    @property
    def install_places(self) -> tuple[str, ...]:
        """The Fusion app bundle, or Workstation's install dir and binary."""
        return (FUSION_APP,) if self.fusion else WORKSTATION_DIRS

    def install_hint(self) -> str:
        from labctl.hypervisor.vmware import facts

        return facts.install_or_start(self.paths)

    # ---- where its files and tools are -------------------------------------------------------------
    @property
    def config_dir(self) -> Path:
        return self.paths.host(FUSION_PREFS if self.fusion else "/etc/vmware")

    @property
    def networking(self) -> Path:
        return self.config_dir / "networking"

    def dhcpd_conf(self, vmnet: int) -> Path:
        if self.fusion:
            return self.config_dir / f"vmnet{vmnet}" / "dhcpd.conf"
        return self.config_dir / f"vmnet{vmnet}" / "dhcpd" / "dhcpd.conf"

    def leases(self, vmnet: int) -> Path:
        if self.fusion:
            return self.paths.host(f"/var/db/vmware/vmnet-dhcpd-vmnet{vmnet}.leases")
        return self.config_dir / f"vmnet{vmnet}" / "dhcpd" / "dhcpd.leases"

    @property
    def apple_leases(self) -> Path:
        return self.paths.host("/var/db/dhcpd_leases")

    @property
    def network_tool(self) -> Path:
        """vmnet-cli (Fusion) or vmware-networks (Workstation)."""
        if self.fusion:
            return self.paths.host(f"{FUSION_LIB}/vmnet-cli")
        return self.paths.which("vmware-networks", "/usr/bin/vmware-networks")

    @property
    def vmrun(self) -> Path:
        if self.fusion:
            return self.paths.which("vmrun", f"{FUSION_LIB}/vmrun")
        return self.paths.which("vmrun", "/usr/bin/vmrun")

    # ---- networks ---------------------------------------------------------------------------------
    @staticmethod
    def parse_networks(data: bytes) -> NetworkTable:
        from labctl.hypervisor.vmware.networking import NetworkingFile

        return NetworkingFile.parse(data)

    def read_networks(self) -> tuple[bytes, NetworkTable]:
        from labctl.hypervisor.vmware import facts

        return facts.read_networking(self.paths)

    def network_rows(self) -> list[dict[str, Any]]:
        from labctl.hypervisor.vmware import facts

        return facts.vmnet_rows(self.paths)

    def resolve_network(self, requested: str | None) -> int:
        from labctl.hypervisor.vmware import facts

        return facts.resolve_vmnet(self.paths, requested)

    def dhcp_config_files(self) -> dict[int, Path]:
        from labctl.hypervisor.vmware import facts

        return facts.dhcpd_files(self.paths)

    def plan_network_create(self, requested: str | None, subnet: str,
                            restart: bool = True) -> tuple[Plan, int]:
        from labctl.hypervisor.vmware import lab

        return lab.plan_vmnet_create(self.paths, requested, subnet, restart=restart)

    def network_create_plan(self, old: bytes, host_nets: Iterable[tuple[str, ipaddress.IPv4Network]],
                            requested: str | None, net: ipaddress.IPv4Network, *, restart: bool = True,
                            dhcpd_exists: Callable[[int], bool] = lambda n: False) -> tuple[Plan, int]:
        from labctl.hypervisor.vmware import lab

        return lab.vmnet_create_plan(self.paths, old, host_nets, requested, net, restart=restart,
                                     dhcpd_exists=dhcpd_exists)

    def network_removal(self, old: bytes, number: int) -> bytes:
        from labctl.hypervisor.vmware.networking import NetworkingFile

        nf = NetworkingFile.parse(old)
        nf.remove_vmnet(number)
        return nf.dump()

    def render_dhcp_config(self, number: int, net: ipaddress.IPv4Network) -> bytes:
        from labctl.hypervisor.vmware import lab

        return lab.render_dhcpd_conf(number, net)

    def record_network(self, number: int, net: ipaddress.IPv4Network,
                       pending: bool) -> Callable[[dict], None]:
        from labctl.hypervisor.vmware import lab

        return lab.record_vmnet(number, net, pending)

    # ---- reservations -------------------------------------------------------------------------------
    @staticmethod
    def parse_reservations(data: bytes) -> ReservationBook:
        from labctl.hypervisor.vmware.dhcpd import DhcpdConf

        return DhcpdConf.parse(data)

    def read_reservations(self, vmnet: int) -> tuple[bytes, ReservationBook]:
        from labctl.hypervisor.vmware import facts

        return facts.read_dhcpd(self.paths, vmnet)

    def plan_reserve(self, req: ReservationRequest, restart: bool = True) -> tuple[Plan, str]:
        from labctl.hypervisor.vmware import lab

        return lab.plan_reserve(self.paths, req, restart)

    def plan_release(self, name: str, vmnet: int, restart: bool = True) -> Plan:
        from labctl.hypervisor.vmware import lab

        return lab.plan_release(self.paths, name, vmnet, restart)

    def refuse_mac_elsewhere(self, files: Mapping[int, bytes], vmnet: int, mac: str) -> None:
        from labctl.hypervisor.vmware import lab

        lab.refuse_mac_elsewhere(self.paths, files, vmnet, mac)

    def validate_reservation_edit(self, old: ReservationBook, data: bytes) -> None:
        from labctl.hypervisor.vmware import lab

        lab._validate(old, data)

    @property
    def protected_marker(self) -> str:
        from labctl.hypervisor.vmware.dhcpd import END_MARKER

        return END_MARKER

    @staticmethod
    def parse_leases(data: bytes) -> list[Any]:
        from labctl.hypervisor.vmware import leases

        return leases.parse(data)

    def latest_lease(self, leases: list[Any], mac: str) -> Any:
        from labctl.hypervisor.vmware.leases import latest_for

        return latest_for(leases, mac)

    # ---- the VM's NIC ------------------------------------------------------------------------------
    @staticmethod
    def parse_vm_config(data: bytes) -> VmConfig:
        from labctl.hypervisor.vmware.vmx import Vmx

        return Vmx.parse(data)

    def nic_mac(self, name: str) -> str:
        from labctl.hypervisor.vmware import nic

        return nic.mac_for(name)

    def plan_nic(self, vmx: VmConfig, vmnet: int, mac: str) -> bytes:
        from labctl.hypervisor.vmware import nic

        return nic.plan_nic(vmx, vmnet, mac)

    def plan_nic_removal(self, vmx: VmConfig, mac: str) -> bytes:
        from labctl.hypervisor.vmware import nic

        return nic.plan_nic_removal(vmx, mac)

    @staticmethod
    def nic_network(nic: Any) -> int | None:
        from labctl.hypervisor.vmware.vmx import nic_vmnet

        return nic_vmnet(nic)

    def reservation_network(self, nic: Any, networks: NetworkTable, requested: int | None = None,
                            vm: str = "the VM") -> int:
        from labctl.hypervisor.vmware.vmx import reservation_vmnet

        return reservation_vmnet(nic, networks, requested, vm)

    # ---- restarting the networking ------------------------------------------------------------------
    def restart_commands(self) -> list[Command]:
        from labctl.hypervisor.vmware import tools

        return tools.restart_commands(self.paths)

    def restart_hint(self) -> str:
        from labctl.hypervisor.vmware import lab

        return lab.restart_hint(self.paths)

    def configure_command(self) -> Command | None:
        from labctl.hypervisor.vmware import tools

        return tools.configure_command(self.paths)

    def status_command(self) -> Command:
        from labctl.hypervisor.vmware import tools

        return tools.status_command(self.paths)

    def parse_status(self, text: str) -> Any:
        from labctl.hypervisor.vmware import tools

        return tools.parse_status(text)

    def lease_backup_step(self, vmnet: int) -> Step:
        from labctl.hypervisor.vmware import lab

        return lab.lease_backup_step(self.paths, vmnet)

    # ---- preflight ---------------------------------------------------------------------------------
    def refuse_unworkable(self, machines: Iterable[MachineSpec],
                          env: Mapping[str, str] | None = None) -> None:
        from labctl.hypervisor.vmware import preflight

        preflight.refuse_unworkable(self.paths, machines, env)

    def adopt_hint(self, name: str) -> str:
        from labctl.hypervisor.vmware import preflight

        return preflight.adopt_hint(name)

    # ---- VMs ---------------------------------------------------------------------------------------
    def running_vms(self, runner: Any = None) -> list[str]:
        from labctl.hypervisor.vmware import vmrun

        return vmrun.running_vms(self.paths, runner)

    def same_vm_path(self, path: str) -> str:
        from labctl.hypervisor.vmware import vmrun

        return vmrun.normalize(path)

    def is_running(self, vmx: Path | str, runner: Any = None) -> bool:
        from labctl.hypervisor.vmware import vmrun

        return vmrun.is_running(self.paths, vmx, runner)

    def start_command(self, vmx: Path | str, gui: bool = True) -> Command:
        from labctl.hypervisor.vmware import vmrun

        return vmrun.start_command(self.paths, vmx, gui)

    def stop_command(self, vmx: Path | str, hard: bool = False) -> Command:
        from labctl.hypervisor.vmware import vmrun

        return vmrun.stop_command(self.paths, vmx, hard)

    def guest_ip(self, vmx: Path | str, runner: Any = None, wait: float = 0.0) -> tuple[str | None, str]:
        from labctl.hypervisor.vmware import vmrun

        return vmrun.guest_ip(self.paths, vmx, runner, wait)

    def vm_locations(self, home: Path) -> tuple[list[Path], list[Path]]:
        """VMware's VM inventory and the folders its New VM assistant suggests."""
        if self.fusion:
            return ([home / "Library/Application Support/VMware Fusion/vmInventory"],
                    [home / "Virtual Machines.localized", home / "Documents/Virtual Machines.localized",
                     home / "Virtual Machines", home / "Documents/Virtual Machines"])
        return [home / ".vmware/inventory.vmls"], [home / "vmware"]

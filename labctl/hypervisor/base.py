"""What labctl asks of a desktop hypervisor, in one place.

The rest of labctl (planner, facts, doctor, routes, commands) talks to a :class:`Hypervisor`
and never imports a hypervisor's own modules; :func:`labctl.hypervisor.get` picks the
implementation.  VMware Fusion/Workstation (``labctl/hypervisor/vmware/``) is the one there
is; a second hypervisor would be one new folder implementing this class.

The documents a hypervisor hands out are models with the methods the planner and doctor use
(duck-typed here so the interface does not name a hypervisor's types):

* a **network table** (VMware: the ``networking`` answer file): ``vmnets`` (number ->
  network), ``get(number)``, ``in_use``, ``dump()``; a network has ``number``, ``name``,
  ``kind`` ("host-only", "nat", "bridged"), ``network`` (IPv4Network or None), ``dhcp``,
  ``virtual_adapter``, ``host_address``, ``bridge``;
* a **reservation book** per network (VMware: the vmnet's ``dhcpd.conf``): ``text``,
  ``hosts``, ``host(name)``, ``subnet``, ``plan_reserve(name, mac, ip)``,
  ``plan_release(name)``, ``pick_free_ip()``, ``managed_blocks()``, ``problems()``, …;
* a **VM configuration** (VMware: the ``.vmx``): ``nics()``, ``nic(index)``, ``get(key)``,
  ``display_name``, ``guest_os``, ``dump()``.
"""

from __future__ import annotations

import ipaddress
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from labctl.labspec import MachineSpec
    from labctl.paths import Paths
    from labctl.plan import Command, Plan, Step

#: a network table, a reservation book, a VM configuration: see the module's docstring
NetworkTable = Any
ReservationBook = Any
VmConfig = Any


class Network(Protocol):
    """One of the hypervisor's virtual networks, as the host-adapter lookup reads it."""

    @property
    def name(self) -> str: ...

    @property
    def network(self) -> ipaddress.IPv4Network | None: ...

    @property
    def host_address(self) -> ipaddress.IPv4Address | None: ...


@dataclass
class ReservationRequest:
    name: str
    mac: str
    ip: str | None  # None = auto
    vmnet: int


class Hypervisor(ABC):
    """One desktop hypervisor on one host layout (``paths``: platform and root)."""

    #: short name ("vmware"), used in the registry
    name: str = ""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths

    # ---- who it is ------------------------------------------------------------------------------
    @property
    @abstractmethod
    def product(self) -> str:
        """The product's name for messages ("VMware Fusion")."""

    @property
    @abstractmethod
    def product_url(self) -> str:
        """Where to get the product."""

    @abstractmethod
    def version(self) -> str | None:
        """The installed version, None when unknown or not installed."""

    @property
    @abstractmethod
    def install_places(self) -> tuple[str, ...]:
        """The host paths (app bundle, install dirs) where the product is when installed."""

    def install_location(self) -> Path | None:
        """The first of :attr:`install_places` that exists (under LABCTL_ROOT); None: absent."""
        for place in self.install_places:
            p = self.paths.host(place)
            if p.exists():
                return p
        return None

    @abstractmethod
    def install_hint(self) -> str:
        """The fix when the hypervisor's own files are missing (not installed, never ran)."""

    # ---- where its files and tools are -------------------------------------------------------------
    @property
    @abstractmethod
    def config_dir(self) -> Path: ...

    @property
    @abstractmethod
    def networking(self) -> Path:
        """The file that defines the virtual networks."""

    @abstractmethod
    def dhcpd_conf(self, vmnet: int) -> Path:
        """The DHCP server's configuration of one network (where reservations go)."""

    @abstractmethod
    def leases(self, vmnet: int) -> Path:
        """The DHCP server's lease file of one network."""

    @property
    @abstractmethod
    def apple_leases(self) -> Path:
        """Apple's bootpd lease file (for hypervisors that hand DHCP to macOS)."""

    @property
    @abstractmethod
    def network_tool(self) -> Path:
        """The tool that restarts/configures the virtual networking."""

    @property
    @abstractmethod
    def vmrun(self) -> Path:
        """The tool that starts, stops and lists VMs."""

    # ---- networks ---------------------------------------------------------------------------------
    @staticmethod
    @abstractmethod
    def parse_networks(data: bytes) -> NetworkTable: ...

    @abstractmethod
    def read_networks(self) -> tuple[bytes, NetworkTable]: ...

    @abstractmethod
    def network_rows(self) -> list[dict[str, Any]]:
        """One row per network for ``vmnet ls`` (host side found by subnet)."""

    @abstractmethod
    def resolve_network(self, requested: str | None) -> int:
        """--vmnet, else the one labctl set up, else the only host-only network with DHCP."""

    @abstractmethod
    def dhcp_config_files(self) -> dict[int, Path]: ...

    @abstractmethod
    def plan_network_create(self, requested: str | None, subnet: str,
                            restart: bool = True) -> tuple[Plan, int]: ...

    @abstractmethod
    def network_create_plan(self, old: bytes, host_nets: Iterable[tuple[str, ipaddress.IPv4Network]],
                            requested: str | None, net: ipaddress.IPv4Network, *, restart: bool = True,
                            dhcpd_exists: Callable[[int], bool] = lambda n: False) -> tuple[Plan, int]:
        """Pure: the plan that adds a host-only network with DHCP on ``net``."""

    @abstractmethod
    def network_removal(self, old: bytes, number: int) -> bytes:
        """Pure: the network file without network ``number``."""

    @abstractmethod
    def render_dhcp_config(self, number: int, net: ipaddress.IPv4Network) -> bytes:
        """The DHCP configuration the hypervisor would write for a new network."""

    @abstractmethod
    def record_network(self, number: int, net: ipaddress.IPv4Network,
                       pending: bool) -> Callable[[dict], None]:
        """labctl's state update for a network it created."""

    # ---- reservations -------------------------------------------------------------------------------
    @staticmethod
    @abstractmethod
    def parse_reservations(data: bytes) -> ReservationBook: ...

    @abstractmethod
    def read_reservations(self, vmnet: int) -> tuple[bytes, ReservationBook]: ...

    @abstractmethod
    def plan_reserve(self, req: ReservationRequest, restart: bool = True) -> tuple[Plan, str]: ...

    @abstractmethod
    def plan_release(self, name: str, vmnet: int, restart: bool = True) -> Plan: ...

    @abstractmethod
    def refuse_mac_elsewhere(self, files: Mapping[int, bytes], vmnet: int, mac: str) -> None:
        """Pure: Conflict if ``mac`` is reserved on another network (``files``: its configs)."""

    @abstractmethod
    def validate_reservation_edit(self, old: ReservationBook, data: bytes) -> None:
        """Refuse an edit of a reservation book that would change more than labctl's own."""

    @property
    @abstractmethod
    def protected_marker(self) -> str:
        """The text after which labctl's reservations go (the hypervisor's own section ends)."""

    @staticmethod
    @abstractmethod
    def parse_leases(data: bytes) -> list[Any]: ...

    @abstractmethod
    def latest_lease(self, leases: list[Any], mac: str) -> Any: ...

    # ---- the VM's NIC ------------------------------------------------------------------------------
    @staticmethod
    @abstractmethod
    def parse_vm_config(data: bytes) -> VmConfig: ...

    @abstractmethod
    def nic_mac(self, name: str) -> str:
        """The dedicated NIC's MAC for a machine name (same name, same MAC)."""

    @abstractmethod
    def plan_nic(self, vmx: VmConfig, vmnet: int, mac: str) -> bytes:
        """The VM configuration with labctl's dedicated NIC on ``vmnet`` (refuses a foreign one)."""

    @abstractmethod
    def plan_nic_removal(self, vmx: VmConfig, mac: str) -> bytes: ...

    @staticmethod
    @abstractmethod
    def nic_network(nic: Any) -> int | None:
        """The network whose DHCP serves a NIC; None for a bridged NIC or one on no network."""

    @abstractmethod
    def reservation_network(self, nic: Any, networks: NetworkTable, requested: int | None = None,
                            vm: str = "the VM") -> int:
        """The network on which labctl can reserve ``nic``'s address (``--nic existing``)."""

    # ---- restarting the networking ------------------------------------------------------------------
    @abstractmethod
    def restart_commands(self) -> list[Command]: ...

    @abstractmethod
    def restart_hint(self) -> str: ...

    @abstractmethod
    def configure_command(self) -> Command | None:
        """The command that regenerates the per-network files, where there is one."""

    @abstractmethod
    def status_command(self) -> Command: ...

    @abstractmethod
    def parse_status(self, text: str) -> Any: ...

    @abstractmethod
    def lease_backup_step(self, vmnet: int) -> Step:
        """Back up a network's lease file before its networking restarts."""

    # ---- preflight ---------------------------------------------------------------------------------
    @abstractmethod
    def refuse_unworkable(self, machines: Iterable[MachineSpec],
                          env: Mapping[str, str] | None = None) -> None:
        """PreconditionMissing for the first machine that cannot work on this desktop."""

    @abstractmethod
    def adopt_hint(self, name: str) -> str: ...

    # ---- VMs ---------------------------------------------------------------------------------------
    @abstractmethod
    def running_vms(self, runner: Any = None) -> list[str]: ...

    @abstractmethod
    def same_vm_path(self, path: str) -> str:
        """A path normalised for comparison as the hypervisor compares VM paths."""

    @abstractmethod
    def is_running(self, vmx: Path | str, runner: Any = None) -> bool: ...

    @abstractmethod
    def start_command(self, vmx: Path | str, gui: bool = True) -> Command: ...

    @abstractmethod
    def stop_command(self, vmx: Path | str, hard: bool = False) -> Command: ...

    @abstractmethod
    def guest_ip(self, vmx: Path | str, runner: Any = None, wait: float = 0.0) -> tuple[str | None, str]: ...

    @abstractmethod
    def vm_locations(self, home: Path) -> tuple[list[Path], list[Path]]:
        """(inventory files, VM folders) where the user's VMs are found."""

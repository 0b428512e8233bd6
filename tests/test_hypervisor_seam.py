"""The hypervisor seam stays real: VMware lives behind labctl.hypervisor.base.Hypervisor.

Only labctl/hypervisor/vmware/ imports its own modules; the rest of labctl reaches VMware through
``paths.hypervisor`` (the registry in labctl/hypervisor/__init__.py names the implementation by
a string).  The interface names no hypervisor, and VMware implements all of it."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from labctl import hypervisor
from labctl.hypervisor.base import Hypervisor
from labctl.paths import Paths

PACKAGE = Path(__file__).resolve().parent.parent / "labctl"
VMWARE = PACKAGE / "hypervisor" / "vmware"


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import``/``from … import`` in the file names (TYPE_CHECKING and
    function-local imports included), with ``from pkg import mod`` read as ``pkg.mod``."""
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def outside_modules() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if VMWARE not in p.parents]


def test_no_module_outside_the_vmware_folder_imports_it():
    offenders = {}
    for path in outside_modules():
        names = {n for n in imported_modules(path)
                 if n == "labctl.hypervisor.vmware" or n.startswith("labctl.hypervisor.vmware.")}
        if names:
            offenders[str(path.relative_to(PACKAGE))] = sorted(names)
    assert offenders == {}


def test_the_checker_sees_the_imports_it_forbids(tmp_path):
    """The import reader must be able to fail: each form of import is caught."""
    sample = tmp_path / "m.py"
    sample.write_text("from typing import TYPE_CHECKING\n"
                      "if TYPE_CHECKING:\n    from labctl.hypervisor.vmware.vmx import Vmx\n"
                      "def f():\n    from labctl.hypervisor import vmware\n"
                      "    import labctl.hypervisor.vmware.lab\n")
    found = imported_modules(sample)
    assert {"labctl.hypervisor.vmware.vmx", "labctl.hypervisor.vmware",
            "labctl.hypervisor.vmware.lab"} <= found


def test_the_old_vmware_modules_are_gone():
    assert not (PACKAGE / "vmware").exists()
    assert not (PACKAGE / "nic.py").exists()


def test_the_interface_names_no_hypervisor():
    """base.py's code (docstrings aside) says nothing of VMware: it imports none of it and no
    name or string in it is VMware's."""
    tree = ast.parse((PACKAGE / "hypervisor" / "base.py").read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            body.pop(0)  # a docstring
    code = ast.unparse(tree).lower()
    assert "class hypervisor(abc)" in code
    assert "vmware" not in code and "fusion" not in code


@pytest.mark.parametrize("platform", ["darwin", "linux"])
def test_registry_gives_a_complete_vmware(platform, tmp_path):
    hv = hypervisor.detect(Paths(platform, tmp_path))
    assert isinstance(hv, Hypervisor)
    assert not getattr(type(hv), "__abstractmethods__", None)  # every method of the interface
    assert hv.product == ("VMware Fusion" if platform == "darwin" else "VMware Workstation")
    assert Paths(platform, tmp_path).hypervisor.networking == hv.networking
    assert str(hv.networking).startswith(str(tmp_path))


def test_paths_keeps_no_hypervisor_locations():
    """The VMware file locations left Paths for the hypervisor."""
    for name in ("networking", "dhcpd_conf", "leases", "apple_leases", "network_tool", "vmrun",
                 "vmware_dir", "product"):
        assert not hasattr(Paths, name), name


def test_interface_methods_are_what_callers_use():
    """Every public member the rest of labctl calls on ``.hypervisor`` is declared by the
    interface (not only by VMware), so a second implementation knows what to provide."""
    declared = {n for n, _ in inspect.getmembers(Hypervisor) if not n.startswith("_")}
    used: set[str] = set()
    for path in outside_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute):
                continue
            if (isinstance(node.value, ast.Attribute) and node.value.attr == "hypervisor") \
                    or (isinstance(node.value, ast.Name) and node.value.id == "hv"):  # hv = ….hypervisor
                used.add(node.attr)
    assert used, "the scan found no use of paths.hypervisor"
    assert used - declared == set()


def test_unknown_hypervisor_is_one_clear_error(tmp_path):
    from labctl.errors import InvalidInput

    with pytest.raises(InvalidInput, match="unknown hypervisor"):
        hypervisor.get(Paths("linux", tmp_path), "virtualbox")


def test_nic_rules_through_the_interface(tmp_path):
    """What the adopt and --nic existing paths ask: the network a NIC is on, and whether its
    address can be reserved there (a bridged NIC never)."""
    from labctl.errors import Conflict

    hv = Paths("linux", tmp_path).hypervisor
    head = 'ethernet0.present = "TRUE"\nethernet0.addressType = "generated"\n' \
           'ethernet0.generatedAddress = "00:0C:29:AA:BB:01"\n'
    nat = hv.parse_vm_config((head + 'ethernet0.connectionType = "nat"\n').encode()).nic(0)
    bridged = hv.parse_vm_config((head + 'ethernet0.connectionType = "bridged"\n').encode()).nic(0)
    custom = hv.parse_vm_config((head + 'ethernet0.connectionType = "custom"\n'
                                 'ethernet0.vnet = "vmnet2"\n').encode()).nic(0)
    assert nat.address == "00:0c:29:aa:bb:01"
    assert (hv.nic_network(nat), hv.nic_network(bridged), hv.nic_network(custom)) == (8, None, 2)
    networks = hv.parse_networks(b"VERSION=1,0\nanswer VNET_8_DHCP yes\nanswer VNET_8_NAT yes\n"
                                 b"answer VNET_8_HOSTONLY_NETMASK 255.255.255.0\n"
                                 b"answer VNET_8_HOSTONLY_SUBNET 172.16.8.0\n")
    assert hv.reservation_network(nat, networks, None, "lab") == 8
    with pytest.raises(Conflict, match="LAN's DHCP"):
        hv.reservation_network(bridged, networks, None, "lab")


def test_every_labctl_import_names_a_module_that_exists():
    """A module that moved behind the seam leaves no import of its old name behind (a
    function-local one would fail only when that path runs)."""
    import importlib
    import importlib.util

    def exists(module: str, name: str | None = None) -> bool:
        if importlib.util.find_spec(module) is None:
            return False
        if name is None or hasattr(importlib.import_module(module), name):
            return True
        return importlib.util.find_spec(f"{module}.{name}") is not None  # a submodule

    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                wanted = [(a.name, None) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                wanted = [(node.module, a.name) for a in node.names]
            else:
                continue
            missing += [f"{path.relative_to(PACKAGE)}: {mod} {name or ''}" for mod, name in wanted
                        if mod.split(".")[0] == "labctl" and not exists(mod, name)]
    assert missing == []

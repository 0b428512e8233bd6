"""Desktop hypervisors behind one interface (:class:`labctl.hypervisor.base.Hypervisor`), the way
docker-machine's libmachine hides its drivers.  This registry is the only place outside a
hypervisor's own folder that names one; the rest of labctl asks ``paths.hypervisor``.

Adding a hypervisor: a new folder ``labctl/hypervisor/NAME/`` with a ``Hypervisor`` subclass,
and one line in :data:`DRIVERS`."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from labctl.errors import InvalidInput

if TYPE_CHECKING:
    from labctl.hypervisor.base import Hypervisor
    from labctl.paths import Paths

#: name -> "module:class" (imported only when asked for: the CLI starts fast)
DRIVERS = {"vmware": "labctl.hypervisor.vmware.driver:VMware"}
DEFAULT = "vmware"


def names() -> list[str]:
    return sorted(DRIVERS)


def detect(paths: Paths) -> Hypervisor:
    """The hypervisor on this desktop: VMware (Fusion on macOS, Workstation on Linux), the only
    one there is; with a second, this is where labctl would look which one is installed."""
    return get(paths, DEFAULT)


def driver(name: str = DEFAULT) -> type[Hypervisor]:
    """The class of hypervisor ``name`` (its static parsers need no host layout)."""
    try:
        module, cls = DRIVERS[name].split(":")
    except KeyError:
        raise InvalidInput(f"unknown hypervisor {name!r}; known: {', '.join(names())}") from None
    found: type[Hypervisor] = getattr(importlib.import_module(module), cls)
    return found


def get(paths: Paths, name: str = DEFAULT) -> Hypervisor:
    """The hypervisor ``name`` for the host layout ``paths``."""
    return driver(name)(paths)

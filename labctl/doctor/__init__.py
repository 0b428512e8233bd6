"""``labctl doctor``: checks over the same probes the rest of labctl uses.

The framework is in :mod:`labctl.doctor.core` (Check, Result, run), the shared probes in
:mod:`labctl.doctor.context`, output in :mod:`labctl.doctor.render`.  Check modules live beside
them, one per layer, and are listed in :data:`CHECK_MODULES`.
"""

from __future__ import annotations

import importlib

from labctl.doctor.core import (
    DEFAULT_TIMEOUT,
    Check,
    Outcome,
    Report,
    Result,
    Status,
    check,
    fail,
    ok,
    order,
    registered,
    run,
    select,
    skip,
    warn,
)

# The check modules, by layer.  Registration point: a module listed here is imported by
# all_checks() and its @check functions join the run.  Add the layers still to come as their
# adapters land (one module may declare checks of several layers).
CHECK_MODULES: list[str] = [
    "labctl.doctor.target",
    "labctl.doctor.host",
    "labctl.doctor.dockermachine",
    "labctl.doctor.vmnet",
    "labctl.doctor.reservation",
    "labctl.doctor.lease",
    "labctl.doctor.machine",      # machine + forwarding layers (labctl.machine)
    "labctl.doctor.routes",       # routes layer (labctl.routes)
    "labctl.doctor.engine",       # engine + end-to-end layers (labctl.engine)
    "labctl.doctor.corp",         # corporate networks: proxies, a CA the engine does not trust
]


def all_checks(opt_in: bool = False) -> list[Check]:
    """Every registered check, in run/display order (``opt_in``: with the checks that change
    something in the lab, like the live probe)."""
    for name in CHECK_MODULES:
        importlib.import_module(name)
    return order(c for c in registered().values() if opt_in or not c.opt_in)


__all__ = [
    "CHECK_MODULES", "DEFAULT_TIMEOUT", "Check", "Outcome", "Report", "Result", "Status",
    "all_checks", "check", "fail", "ok", "order", "registered", "run", "select", "skip", "warn",
]

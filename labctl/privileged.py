"""labctl's own code run as root: the privileged helpers (``labctl.fileops`` for file writes,
``labctl.routes.batch`` for macOS route batches) when labctl itself is not root.

A helper runs under ``sudo -n`` isolated from everything the caller's shell could slip in:
``python -I`` (no PYTHONPATH, no user site, not the working directory on ``sys.path``), and,
as every command the Runner runs through sudo, the working directory ``/`` and an environment
with nothing but a fixed PATH and the locale.
So that root runs the *same* labctl as the caller (an installed package, a pipx venv or a
checkout), the directory holding the caller's ``labctl`` package is passed as an argument
and put first on ``sys.path``; the helper refuses to run a module found anywhere else.
"""

from __future__ import annotations

import sys
from pathlib import Path

from labctl.runner import Result, Runner

# argv: -c BOOT PACKAGE_DIR MODULE ARGS...  (PACKAGE_DIR is data, never part of the code)
BOOT = ("import sys, importlib; d = sys.argv[1]; sys.path.insert(0, d); "
        "m = importlib.import_module(sys.argv[2]); "
        "f = getattr(m, '__file__', None) or ''; "
        "sys.exit('labctl helper: ' + sys.argv[2] + ' was not loaded from ' + d) "
        "if not f.startswith(d.rstrip('/') + '/') else sys.exit(m.main(sys.argv[3:]))")


def package_dir() -> str:
    """The directory that holds the ``labctl`` package this process runs."""
    import labctl

    return str(Path(labctl.__file__).resolve().parent.parent)


def helper_argv(module: str, *args: str) -> list[str]:
    return [sys.executable, "-I", "-c", BOOT, package_dir(), module, *args]


def run_helper(runner: Runner, module: str, args: list[str], *, input: str | bytes | None = None,
               timeout: float | None = None, check: bool = True) -> Result:
    """Run ``module.main(args)`` as root (``sudo -n``), isolated; see the module docstring."""
    return runner.run(helper_argv(module, *args), sudo=True, input=input, timeout=timeout,
                      check=check)

"""`scripts/bench --lab`: labctl against the lab in a box (Linux, root), as ratios to a bare
typer app started the same way (``nsenter`` into the desktop namespace) in the same run.

* converged ``labctl up``: the lab is up; every further ``up`` must change nothing, run no
  privileged command and not touch VMware's tools (checked on each run);
* ``labctl doctor`` on the healthy lab (every check, the VM's firewall probe included);
* one call of the docker-machine stand-in, and how many a converged ``up`` makes (from its
  ``--debug`` log): the part of the figures above that the real Go binary does not cost.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _spread(values: list[float]) -> str:
    q = statistics.quantiles(values, n=4) if len(values) >= 4 else [min(values), 0, max(values)]
    return f"{q[0]:.2f}–{q[2]:.2f}"


def lab_results(runs: int, bare: Path) -> list[dict]:
    sys.path.insert(0, str(REPO))
    from tests.lab.world import LabWorld, world_problem

    problem = world_problem()
    if problem:
        raise SystemExit(f"bench --lab: {problem}")
    out = []
    with LabWorld() as w:
        up = w.labctl("up", "lab", "--yes")
        if up.returncode != 0:
            raise SystemExit(f"bench --lab: labctl up failed: {up.stderr[-800:]}")
        floor = ["nsenter", f"--net=/run/netns/{w.desk}", sys.executable, str(bare), "one"]

        def timed(fn) -> float:
            t = time.perf_counter()
            fn()
            return time.perf_counter() - t

        for name, argv in (("converged labctl up (lab)", ["up", "lab", "--yes"]),
                           ("labctl doctor, healthy (lab)", ["doctor", "lab"])):
            mine, base, ratios = [], [], []
            for _ in range(runs):
                calls, audit = w.calls(), len(w.audit())
                holder: dict = {}

                def run_labctl(argv=argv, holder=holder) -> None:
                    holder["r"] = w.labctl(*argv)

                a = timed(run_labctl)
                r = holder["r"]
                if r.returncode != 0 and argv[0] == "up":
                    raise SystemExit(f"bench --lab: labctl {' '.join(argv)} failed: {r.stdout[-800:]}"
                                     f"{r.stderr[-800:]}")
                if argv[0] == "up" and (w.calls() != calls or len(w.audit()) != audit):
                    raise SystemExit("bench --lab: a converged up changed something")
                b = timed(lambda: subprocess.run(floor, capture_output=True, check=True))
                mine.append(a)
                base.append(b)
                ratios.append(a / b)
            out.append({"name": name, "median_ms": round(statistics.median(mine) * 1000, 1),
                        "min_ms": round(min(mine) * 1000, 1),
                        "floor_ms": round(statistics.median(base) * 1000, 1),
                        "ratio": round(statistics.median(ratios), 3),
                        "ratio_iqr": _spread(ratios), "runs": runs})
        # What the simulated hypervisor costs inside those figures: each docker-machine call is
        # the Python stand-in (an interpreter start), where the real tool is a Go binary.
        dm = [str(w.root / "usr/local/bin/docker-machine"), "--version"]
        dm_runs = []
        for _ in range(runs):
            dm_runs.append(timed(lambda: w.desk_run(dm, env=w.env(), check=True)))
        debug = w.labctl("--debug", "up", "lab", "--yes")
        n_calls = sum(1 for line in debug.stderr.splitlines()
                      if re.match(r"^labctl: run(?: \(privileged\))?: \S*docker-machine ", line))
        out.append({"name": f"docker-machine stand-in, 1 call (lab; {n_calls} per converged up)",
                    "median_ms": round(statistics.median(dm_runs) * 1000, 1),
                    "min_ms": round(min(dm_runs) * 1000, 1), "floor_ms": None, "ratio": None,
                    "ratio_iqr": "", "runs": runs, "calls_per_up": n_calls})
        w.labctl("down", "lab")
    return out

"""Privileged helper for macOS route batches: run as root by labctl.privileged (isolated) with
a JSON list of argv on stdin runs each ``route`` command (through the Runner) and prints a
JSON list of {rc, stdout, stderr}: one password prompt for the whole set of changes."""

from __future__ import annotations

import json
import sys


def main(argv: list[str] | None = None) -> int:
    from labctl.errors import LabctlError
    from labctl.runner import Runner

    try:
        argvs = json.loads(sys.stdin.read())
    except ValueError as exc:
        print(f"labctl.routes.batch: bad input: {exc}", file=sys.stderr)
        return 2
    if not isinstance(argvs, list) or not all(
            isinstance(a, list) and a and all(isinstance(x, str) for x in a) for a in argvs):
        print("labctl.routes.batch: expected a JSON list of argv lists", file=sys.stderr)
        return 2
    if not all(a[0].endswith("/route") for a in argvs):
        print("labctl.routes.batch: only route commands are allowed", file=sys.stderr)
        return 2
    runner = Runner()
    out = []
    for argv in argvs:
        try:
            r = runner.run(argv, timeout=20, check=False)
            out.append({"rc": r.returncode, "stdout": r.stdout, "stderr": r.stderr})
        except LabctlError as exc:
            out.append({"rc": 127, "stdout": "", "stderr": exc.message})
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

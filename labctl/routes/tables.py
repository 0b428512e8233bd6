"""The two route tables behind one interface: read the kernel's IPv4 routes, and the exact
argv that add, replace and delete one route.  Nothing here runs anything by itself except
``read`` (a read-only probe through the Runner)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from labctl.errors import CommandFailed
from labctl.paths import Paths
from labctl.routes.model import IPv4Address, IPv4Network, Route
from labctl.runner import Runner

READ_TIMEOUT = 10.0
CHANGE_TIMEOUT = 20.0


@dataclass(frozen=True)
class RouteOp:
    """One route change: ``add`` (the destination is absent), ``replace`` (it is labctl's own
    route via another gateway) or ``delete`` (labctl's own route)."""

    action: str
    destination: IPv4Network
    gateway: IPv4Address
    network: str | None = None  # the Docker network it serves (for records and messages)

    def describe(self) -> str:
        verb = {"add": "add", "replace": "replace", "delete": "remove"}[self.action]
        what = f" ({self.network})" if self.network else ""
        return f"{verb} {self.destination} via {self.gateway}{what}"


class RouteTable:
    platform = ""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths

    # reading
    def read_argv(self) -> list[str]:
        raise NotImplementedError

    def read_env(self) -> dict[str, str] | None:
        return None

    def parse(self, text: str) -> list[Route]:
        raise NotImplementedError

    def read(self, runner: Runner | None = None) -> list[Route]:
        runner = runner or Runner()
        from labctl.routes.ifaces import mark_tunnels

        result = runner.run(self.read_argv(), timeout=READ_TIMEOUT, env=self.read_env(), show=False)
        return mark_tunnels(self.parse(result.stdout))

    # changing: the commands a user could paste, one list per op
    def op_argvs(self, op: RouteOp) -> list[list[str]]:
        raise NotImplementedError


class LinuxTable(RouteTable):
    """``ip -j route`` to read; ``ip route replace|del`` to change, many at once with
    ``ip -batch -`` (one privileged process for the whole set)."""

    platform = "linux"

    @property
    def ip(self) -> str:
        return str(self.paths.which("ip", "/sbin/ip"))

    def read_argv(self) -> list[str]:
        return [self.ip, "-4", "-j", "route", "show", "table", "main"]

    def parse(self, text: str) -> list[Route]:
        from labctl.routes.parse import parse_ip_json

        return parse_ip_json(text)

    def read_quick(self) -> list[Route] | None:
        """The main table from /proc/net/route: a file read, no process (``route ls``'s fast
        path; planning reads ``ip -j route``).  None when it cannot be read."""
        from labctl.routes.parse import parse_proc_net_route

        proc = self.paths.host("/proc/net/route") if self.paths.rooted else Path("/proc/net/route")
        from labctl.routes.ifaces import mark_tunnels

        try:
            return mark_tunnels(parse_proc_net_route(proc.read_text()))
        except OSError:
            return None

    def batch_line(self, op: RouteOp) -> str:
        if op.action == "delete":
            return f"route del {op.destination} via {op.gateway}"
        return f"route replace {op.destination} via {op.gateway}"

    def op_argvs(self, op: RouteOp) -> list[list[str]]:
        return [[self.ip, *self.batch_line(op).split()]]

    def batch_argv(self) -> list[str]:
        return [self.ip, "-batch", "-"]


class DarwinTable(RouteTable):
    """``LC_ALL=C netstat -nr -f inet`` to read; ``route -n add|delete -net`` to change."""

    platform = "darwin"

    @property
    def route(self) -> str:
        return str(self.paths.host("/sbin/route"))

    @property
    def netstat(self) -> str:
        return str(self.paths.host("/usr/sbin/netstat"))

    def read_argv(self) -> list[str]:
        return [self.netstat, "-nr", "-f", "inet"]

    def read_env(self) -> dict[str, str] | None:
        return {"LC_ALL": "C"}

    def parse(self, text: str) -> list[Route]:
        from labctl.routes.parse import parse_netstat_darwin

        return parse_netstat_darwin(text)

    def add_argv(self, dest: IPv4Network, gw: IPv4Address) -> list[str]:
        return [self.route, "-n", "add", "-net", str(dest), str(gw)]

    def delete_argv(self, dest: IPv4Network, gw: IPv4Address) -> list[str]:
        return [self.route, "-n", "delete", "-net", str(dest), str(gw)]

    def op_argvs(self, op: RouteOp) -> list[list[str]]:
        if op.action == "add":
            return [self.add_argv(op.destination, op.gateway)]
        if op.action == "delete":
            return [self.delete_argv(op.destination, op.gateway)]
        return [[self.route, "-n", "delete", "-net", str(op.destination)],
                self.add_argv(op.destination, op.gateway)]


def outcome(op: RouteOp, rc: int, stdout: str, stderr: str) -> str:
    """What a darwin ``route`` run did: "ok", "exists" (add: File exists), "absent" (delete:
    not in table) or "failed".  Real texts: ``add net 172.17.0.0: gateway 192.168.99.100``;
    ``route: writing to routing socket: File exists`` then ``add net …: gateway …: File exists``;
    ``delete net …: not in table``."""
    text = f"{stdout}\n{stderr}"
    if rc == 0:
        return "ok"
    if "File exists" in text:
        return "exists"
    if "not in table" in text:
        return "absent"
    return "failed"


def table_for(paths: Paths) -> RouteTable:
    return DarwinTable(paths) if paths.platform == "darwin" else LinuxTable(paths)


def read_table(paths: Paths, runner: Runner | None = None, quick: bool = False) -> list[Route]:
    table = table_for(paths)
    if quick and isinstance(table, LinuxTable):
        routes = table.read_quick()
        if routes is not None:
            return routes
    try:
        return table_for(paths).read(runner)
    except CommandFailed as exc:
        raise CommandFailed(f"cannot read the routing table: {exc.message}",
                            "check that netstat (macOS) or ip (Linux) works") from exc

"""The VM side of "every container answers on its own IP": the Docker host's firewall.

Routes on the desktop bring packets for a container subnet to the VM's fixed address; the VM
must then forward them to the container.  Real Docker hosts refuse:

* boot2docker >= 18.09 (docker-machine 0.16.2 installs v19.03.12) leaves IP forwarding off
  until dockerd starts; dockerd switches it on itself and, because it did, sets the iptables
  ``FORWARD`` policy to ``DROP`` (moby PR #28257).  Docker's own rules then accept only
  published ports: ping and every unpublished port time out.
* Engine >= 28 also ends each bridge's ``DOCKER`` chain with a drop for traffic that does not
  come from the bridge itself (unless the network's gateway mode is ``nat-unprotected``).

The narrow fix is one rule in ``DOCKER-USER`` (a chain dockerd creates, jumps to first from
``FORWARD`` and never edits): accept what arrives on the lab NIC from the vmnet's subnet.
Nothing else is opened: not other interfaces, not other sources, not forwarding in general.
It is made persistent the way the host boots:

* boot2docker: a block in ``/var/lib/boot2docker/bootsync.sh`` (persistent disk; boot2docker
  runs it with ``sh`` before it starts dockerd, which keeps an existing ``DOCKER-USER`` chain);
* systemd hosts: a ``docker.service`` drop-in whose ``ExecStartPost`` adds the rule.

Facts come from one ``docker-machine ssh`` (``probe_script``/``parse_probe``); the planners
are pure (facts -> Plan); ``down`` removes exactly labctl's block and rule, nothing else.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from labctl.plan import Change, Command, ExecContext, Plan, unified_diff
from labctl.vmfile import replace_cmd

BOOTSYNC = "/var/lib/boot2docker/bootsync.sh"
DROPIN = "/etc/systemd/system/docker.service.d/20-labctl-routing.conf"
CHAIN = "DOCKER-USER"
SEP = "@@labctl-probe@@"
_IFACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,14}$")
_ADDR = re.compile(r"^\d+:\s+(\S+)\s+inet\s+(\d+\.\d+\.\d+\.\d+)/(\d+)", re.M)


def _sections() -> list[tuple[str, str]]:
    """(name, shell) of each probe section; read-only commands only."""
    return [
        ("os", "cat /etc/os-release 2>/dev/null"),
        ("addr", "ip -4 -o addr show 2>/dev/null"),
        ("forward", "sudo iptables -S FORWARD 2>&1"),
        ("user", f"sudo iptables -S {CHAIN} 2>&1"),
        ("docker", "sudo iptables -S DOCKER 2>&1"),
        ("raw", "sudo iptables -t raw -S PREROUTING 2>&1"),
        ("bootsync", f"if [ -e {BOOTSYNC} ]; then echo present; sudo cat {BOOTSYNC}; fi"),
        ("dropin", f"if [ -e {DROPIN} ]; then echo present; sudo cat {DROPIN}; fi"),
        ("ip_forward", "cat /proc/sys/net/ipv4/ip_forward 2>/dev/null"),
        ("b2d", "if [ -d /var/lib/boot2docker ]; then echo yes; fi"),  # exit 0 off boot2docker
    ]


def probe_script() -> str:
    """One shell command that prints every fact this module needs, section by section."""
    parts = []
    for name, cmd in _sections():
        parts.append(f"echo '{SEP} {name}'; {cmd}")
    return "; ".join(parts)


@dataclass(frozen=True)
class Rule:
    """One accept rule in DOCKER-USER: what arrives on ``iface`` from ``source``."""

    iface: str
    source: ipaddress.IPv4Network

    def spec(self) -> list[str]:
        return ["-i", self.iface, "-s", str(self.source), "-j", "ACCEPT"]

    def text(self) -> str:
        return " ".join(self.spec())


@dataclass
class VmFacts:
    """What the VM says about its firewall and boot files."""

    os_id: str = ""
    os_pretty: str = ""
    addresses: dict[str, list[ipaddress.IPv4Interface]] = field(default_factory=dict)
    forward_policy: str = ""  # ACCEPT / DROP / "" (unknown)
    iptables_ok: bool = False  # iptables answered (the FORWARD chain could be read)
    user_chain: bool = False  # DOCKER-USER exists
    user_rules: list[dict[str, str]] = field(default_factory=list)  # parsed -A DOCKER-USER lines
    bootsync: str | None = None  # None: no file
    dropin: str | None = None
    ip_forward: str = ""
    addr_text: str = ""  # ``ip -4 -o addr show`` as printed
    boot2docker: bool = False
    bridge_drops: list[str] = field(default_factory=list)  # bridges whose DOCKER chain ends in a drop
    # Engine >= 28's raw-table drops of traffic to container addresses from other interfaces
    # (destination, bridge): no filter rule can let that traffic in
    raw_drops: list[tuple[str, str]] = field(default_factory=list)

    def blocked(self) -> bool:
        """Whether routed traffic to an unpublished container port is dropped when no rule of
        labctl's lets it in: FORWARD policy DROP (boot2docker), or Engine >= 28's drop."""
        return self.forward_policy == "DROP" or bool(self.bridge_drops)

    def persisted(self, name: str) -> bool:
        if self.init == "boot2docker":
            return self.bootsync is not None and begin_marker(name) in self.bootsync
        return self.dropin is not None and self.dropin.startswith(f"{DROPIN_HEAD}{name};")

    @property
    def init(self) -> str:
        """How the rule is made persistent: ``boot2docker`` or ``systemd``."""
        return "boot2docker" if self.boot2docker or self.os_id == "boot2docker" else "systemd"

    def iface_for(self, ip: str) -> str | None:
        want = ipaddress.IPv4Address(ip)
        for name, addrs in self.addresses.items():
            if any(a.ip == want for a in addrs):
                return name
        return None

    def has_rule(self, rule: Rule) -> bool:
        """Whether DOCKER-USER holds exactly ``rule`` (no other matches on the same line)."""
        return any(r == {"-i": rule.iface, "-s": str(rule.source), "-j": "ACCEPT"}
                   for r in self.user_rules)

    def as_dict(self) -> dict[str, Any]:
        return {"os": self.os_id, "init": self.init, "forward_policy": self.forward_policy,
                "docker_user_chain": self.user_chain, "docker_user_rules": self.user_rules,
                "ip_forward": self.ip_forward}


def _rule_fields(line: str) -> dict[str, str] | None:
    try:
        words = shlex.split(line)
    except ValueError:
        return None
    if words[:2] != ["-A", CHAIN]:
        return None
    out: dict[str, str] = {}
    i = 2
    while i < len(words):
        key = words[i]
        if key == "!" and i + 2 < len(words):
            out["!" + words[i + 1]] = words[i + 2]
            i += 3
            continue
        if i + 1 < len(words):
            out[key] = words[i + 1]
        i += 2
    return out


def parse_probe(text: str) -> VmFacts:
    """Pure: the probe's output -> VmFacts (unknown sections stay empty)."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(SEP + " "):
            current = sections.setdefault(line[len(SEP) + 1:].strip(), [])
            continue
        if current is not None:
            current.append(line)
    f = VmFacts()
    for line in sections.get("os", []):
        key, _, value = line.partition("=")
        value = value.strip().strip('"')
        if key == "ID":
            f.os_id = value
        elif key == "PRETTY_NAME":
            f.os_pretty = value
    f.addr_text = "\n".join(sections.get("addr", []))
    for m in _ADDR.finditer(f.addr_text):
        f.addresses.setdefault(m.group(1).split("@")[0], []).append(
            ipaddress.IPv4Interface(f"{m.group(2)}/{m.group(3)}"))
    for line in sections.get("forward", []):
        if line.startswith("-P FORWARD "):
            f.forward_policy = line.split()[2]
            f.iptables_ok = True
    user = sections.get("user", [])
    f.user_chain = any(line.strip() == f"-N {CHAIN}" for line in user)
    f.user_rules = [r for r in (_rule_fields(line) for line in user) if r is not None]
    for key in ("bootsync", "dropin"):
        lines = sections.get(key)
        if lines and lines[0] == "present":
            body = "\n".join(lines[1:])
            setattr(f, key, body + "\n" if lines[1:] else "")
    for line in sections.get("docker", []):
        r = _rule_fields(line.replace("-A DOCKER ", f"-A {CHAIN} ", 1)) if line.startswith("-A DOCKER ") \
            else None
        if r and r.get("-j") == "DROP" and r.get("!-i") and r.get("!-i") == r.get("-o"):
            f.bridge_drops.append(r["-o"])
    for line in sections.get("raw", []):
        r = _rule_fields(line.replace("-A PREROUTING ", f"-A {CHAIN} ", 1)) \
            if line.startswith("-A PREROUTING ") else None
        if r and r.get("-j") == "DROP" and r.get("-d") and r.get("!-i"):
            f.raw_drops.append((r["-d"], r["!-i"]))
    f.ip_forward = "".join(sections.get("ip_forward", [])).strip()
    f.boot2docker = "".join(sections.get("b2d", [])).strip() == "yes"
    return f


# ---- what labctl writes ------------------------------------------------------------------------
def begin_marker(name: str) -> str:
    return f"# >>> labctl {name}: accept routed traffic from the desktop (labctl down removes this)"


def end_marker(name: str) -> str:
    return f"# <<< labctl {name}"


def ensure_cmd(rule: Rule) -> str:
    """Idempotent shell: create the chain if dockerd has not yet, add the rule once."""
    spec = rule.text()
    return (f"iptables -N {CHAIN} 2>/dev/null; "
            f"iptables -C {CHAIN} {spec} 2>/dev/null || iptables -I {CHAIN} {spec}")


def boot_block(name: str, rule: Rule) -> str:
    return (f"{begin_marker(name)}\n"
            f"{ensure_cmd(rule)}\n"
            f"{end_marker(name)}\n")


def strip_block(text: str, name: str) -> str:
    """``text`` without labctl's block for ``name`` (other lines untouched)."""
    out: list[str] = []
    skipping = False
    for line in text.splitlines(keepends=True):
        if line.rstrip("\r\n") == begin_marker(name):
            skipping = True
            continue
        if skipping:
            if line.rstrip("\r\n") == end_marker(name):
                skipping = False
            continue
        out.append(line)
    if skipping:  # a begin without end: keep the file as it was, labctl will not guess
        return text
    return "".join(out)


def with_block(text: str | None, name: str, rule: Rule) -> str:
    base = strip_block(text or "", name)
    if base and not base.endswith("\n"):
        base += "\n"
    if not base:
        base = "#!/bin/sh\n"
    return base + boot_block(name, rule)


DROPIN_HEAD = "# written by labctl for the lab machine "


def dropin_text(name: str, rule: Rule) -> str:
    script = ensure_cmd(rule).replace("iptables", "/usr/sbin/iptables")
    return (DROPIN_HEAD + name + "; labctl down removes it\n"
            "# accept routed traffic from the desktop's vmnet to the containers\n"
            "[Service]\n"
            f"ExecStartPost=/bin/sh -c {shlex.quote(script)}\n")


def check_rule_values(iface: str, subnet: ipaddress.IPv4Network) -> Rule:
    if not _IFACE.match(iface):
        from labctl.errors import InvalidInput

        raise InvalidInput(f"unexpected interface name {iface!r} in the VM",
                           "report this; labctl only writes names it can check")
    return Rule(iface, ipaddress.IPv4Network(str(subnet)))


# ---- planners ----------------------------------------------------------------------------------
Ssh = Callable[[str], Any]  # runs one shell command line in the VM (docker-machine ssh)


@dataclass
class VmChange(Change):
    """A command line run in the VM through ``docker-machine ssh`` (shown exactly in
    ``--dry-run``), with the diff of the VM file it edits, if any."""

    description: str
    command: str
    ssh: Ssh
    shown: list[Command]
    vm_path: str = ""
    vm_old: str | None = None
    vm_new: str | None = None
    privileged: bool = False  # root in the VM, not on the desktop

    def commands(self) -> list[Command]:
        return self.shown

    def diff(self) -> str:
        if not self.vm_path or self.vm_old == self.vm_new:
            return ""
        path: Any = PurePosixPath(self.vm_path)
        return unified_diff(path, None if self.vm_old is None else self.vm_old.encode(),
                            None if self.vm_new is None else self.vm_new.encode())

    def apply(self, ctx: ExecContext) -> None:
        self.ssh(self.command)


def _change(name: str, description: str, script: list[str], ssh: Ssh, binary: str,
            vm_path: str = "", old: str | None = None, new: str | None = None) -> VmChange:
    command = f"sudo sh -c {shlex.quote('; '.join(script))}"
    return VmChange(description, command, ssh, [Command([binary, "ssh", name, command])],
                    vm_path=vm_path, vm_old=old, vm_new=new)


def plan_open(name: str, facts: VmFacts, fixed_ip: str, subnet: ipaddress.IPv4Network,
              ssh: Ssh, binary: str = "docker-machine") -> tuple[Plan, Rule | None]:
    """Pure: the changes that make the VM forward routed traffic from ``subnet`` (arriving on
    the NIC that holds ``fixed_ip``) to its containers, now and after every boot."""
    plan = Plan(f"open the route into {name}'s containers")
    iface = facts.iface_for(fixed_ip)
    if iface is None:
        plan.notes.append(f"{name} does not hold {fixed_ip} yet: the firewall rule waits for it")
        return plan, None
    rule = check_rule_values(iface, subnet)
    script: list[str] = []
    if not facts.has_rule(rule):
        script.append(ensure_cmd(rule))
    path, old = (BOOTSYNC, facts.bootsync) if facts.init == "boot2docker" else (DROPIN, facts.dropin)
    new = with_block(old, name, rule) if facts.init == "boot2docker" else dropin_text(name, rule)
    if new != old:
        script.append(replace_cmd(path, new))
        if facts.init == "systemd":
            script.append("systemctl daemon-reload")
    if not script:
        return plan, rule
    where = "bootsync.sh" if facts.init == "boot2docker" else "a docker.service drop-in"
    plan.add(_change(name, f"accept traffic from {subnet} on {name}'s {iface} in {CHAIN} "
                           f"(now, and at boot via {where})", script, ssh, binary,
                     path if new != old else "", old, new))
    return plan, rule


def plan_close(name: str, facts: VmFacts, rule: Rule | None, ssh: Ssh,
               binary: str = "docker-machine") -> Plan:
    """Pure: undo ``plan_open`` (only labctl's rule and block; nothing else in the files)."""
    plan = Plan(f"close the route into {name}'s containers")
    script: list[str] = []
    if rule is not None and facts.has_rule(rule):
        script.append(f"iptables -D {CHAIN} {rule.text()}")
    path = ""
    old = new = None
    if facts.bootsync is not None and begin_marker(name) in facts.bootsync:
        path, old = BOOTSYNC, facts.bootsync
        new = strip_block(old, name)
        if new.strip() in ("", "#!/bin/sh"):
            new = None  # only labctl's block was there: the file labctl created goes
        script.append(replace_cmd(path, new))
    if facts.dropin is not None and facts.dropin.startswith(DROPIN_HEAD + name + ";"):
        path, old, new = DROPIN, facts.dropin, None
        script += [replace_cmd(DROPIN, None), "systemctl daemon-reload"]
    if script:
        plan.add(_change(name, f"remove labctl's {CHAIN} rule from {name}", script, ssh, binary,
                         path, old, new))
    return plan


def rule_from_record(rec: dict[str, Any]) -> Rule | None:
    data = rec.get("firewall") or {}
    try:
        return Rule(str(data["iface"]), ipaddress.IPv4Network(str(data["subnet"])))
    except (KeyError, ValueError, TypeError):
        return None

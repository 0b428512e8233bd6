"""labctl.vmpath: the VM's firewall facts and the pure planners that open (and close) the route
into the containers.  The probe texts below are what boot2docker 19.03 and a systemd host
print (``iptables -S`` format); the lab tests (test_up_e2e.py) run the same plans for real."""

from __future__ import annotations

import ipaddress
import subprocess

import pytest

from labctl import vmpath
from labctl.errors import InvalidInput

SUBNET = ipaddress.IPv4Network("192.168.99.0/24")
IP = "192.168.99.3"
SEP = vmpath.SEP


def probe_text(*, os_id: str = "boot2docker", policy: str = "DROP", rules: str = "",
               bootsync: str | None = None, dropin: str | None = None, docker: str = "",
               raw: str = "", b2d: bool = True) -> str:
    def present(body: str | None) -> str:
        return "" if body is None else "present\n" + body
    return (f"{SEP} os\nNAME=X\nID={os_id}\nPRETTY_NAME=\"{os_id} test\"\n"
            f"{SEP} addr\n"
            "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n"
            "2: eth0    inet 172.16.61.130/24 brd 172.16.61.255 scope global eth0\\       valid_lft\n"
            f"3: eth1    inet {IP}/24 brd 192.168.99.255 scope global eth1\\       valid_lft forever\n"
            "4: docker0    inet 172.17.0.1/16 brd 172.17.255.255 scope global docker0\\  valid_lft\n"
            f"{SEP} forward\n-P FORWARD {policy}\n-A FORWARD -j DOCKER-USER\n"
            f"{SEP} user\n-N DOCKER-USER\n{rules}-A DOCKER-USER -j RETURN\n"
            f"{SEP} docker\n-N DOCKER\n{docker}"
            f"{SEP} raw\n-P PREROUTING ACCEPT\n{raw}"
            f"{SEP} bootsync\n{present(bootsync)}"
            f"{SEP} dropin\n{present(dropin)}"
            f"{SEP} ip_forward\n1\n"
            f"{SEP} b2d\n{'yes' if b2d else ''}\n")


RULE_LINE = "-A DOCKER-USER -s 192.168.99.0/24 -i eth1 -j ACCEPT\n"


class Sent:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, command: str) -> None:
        self.lines.append(command)


def test_probe_is_one_read_only_command():
    script = vmpath.probe_script()
    assert "\n" not in script
    for word in ("-I ", "-A ", "-D ", "rm ", "mv ", "printf", ">"):
        assert word not in script.replace("2>&1", "").replace("2>/dev/null", ""), word


def test_parse_boot2docker_after_dockerd_start():
    f = vmpath.parse_probe(probe_text())
    assert (f.os_id, f.init, f.forward_policy, f.iptables_ok, f.user_chain) == \
        ("boot2docker", "boot2docker", "DROP", True, True)
    assert f.iface_for(IP) == "eth1" and f.iface_for("10.0.0.1") is None
    assert f.user_rules == [{"-j": "RETURN"}]
    assert f.bootsync is None and f.dropin is None and f.blocked()


def test_plan_open_on_a_fresh_boot2docker():
    f = vmpath.parse_probe(probe_text())
    sent = Sent()
    plan, rule = vmpath.plan_open("lab", f, IP, SUBNET, sent, "docker-machine")
    assert rule == vmpath.Rule("eth1", SUBNET)
    assert len(plan.changes) == 1
    change = plan.changes[0]
    assert "accept traffic from 192.168.99.0/24 on lab's eth1 in DOCKER-USER" in change.description
    [shown] = change.commands()
    assert shown.argv[:3] == ["docker-machine", "ssh", "lab"]
    diff = change.diff()
    assert diff.startswith("--- /dev/null\n+++ /var/lib/boot2docker/bootsync.sh\n")
    assert "iptables -C DOCKER-USER -i eth1 -s 192.168.99.0/24 -j ACCEPT 2>/dev/null || iptables -I" in diff
    # the command line run in the VM is exactly the one shown
    change.apply(None)  # type: ignore[arg-type]
    assert sent.lines == [shown.argv[3]]
    assert "--dry-run" not in plan.render()  # plans say what they do, not how they are called


def test_converged_vm_plans_nothing():
    block = vmpath.with_block(None, "lab", vmpath.Rule("eth1", SUBNET))
    f = vmpath.parse_probe(probe_text(rules=RULE_LINE, bootsync=block))
    plan, rule = vmpath.plan_open("lab", f, IP, SUBNET, Sent())
    assert plan.empty and rule is not None and f.persisted("lab")


def test_rule_present_but_not_at_boot_only_writes_the_file():
    f = vmpath.parse_probe(probe_text(rules=RULE_LINE))
    plan, _ = vmpath.plan_open("lab", f, IP, SUBNET, Sent())
    [change] = plan.changes
    command = change.commands()[0].argv[3]
    assert not command.startswith("sudo sh -c 'iptables") and "bootsync.sh" in command


def test_a_wider_rule_is_not_labctls():
    wider = "-A DOCKER-USER -s 192.168.99.0/24 -i eth1 -p tcp -j ACCEPT\n"
    f = vmpath.parse_probe(probe_text(rules=wider))
    assert not f.has_rule(vmpath.Rule("eth1", SUBNET))


def test_users_bootsync_lines_survive_open_and_close():
    user = "#!/bin/sh\n# mine\nsysctl -w vm.max_map_count=262144\n"
    f = vmpath.parse_probe(probe_text(bootsync=user))
    plan, rule = vmpath.plan_open("lab", f, IP, SUBNET, Sent())
    new = plan.changes[0].vm_new  # type: ignore[attr-defined]
    assert new.startswith(user) and vmpath.begin_marker("lab") in new
    # a second machine's block beside it, then labctl down for lab: the user's bytes come back
    other = vmpath.with_block(new, "other", vmpath.Rule("eth1", ipaddress.IPv4Network("10.9.0.0/24")))
    f2 = vmpath.parse_probe(probe_text(rules=RULE_LINE, bootsync=other))
    close = vmpath.plan_close("lab", f2, rule, Sent())
    [change] = close.changes
    assert change.vm_new == vmpath.with_block(user, "other", vmpath.Rule(  # type: ignore[attr-defined]
        "eth1", ipaddress.IPv4Network("10.9.0.0/24")))
    assert "iptables -D DOCKER-USER -i eth1 -s 192.168.99.0/24 -j ACCEPT" in change.commands()[0].argv[3]


def test_close_removes_a_file_only_labctl_wrote():
    block = vmpath.with_block(None, "lab", vmpath.Rule("eth1", SUBNET))
    f = vmpath.parse_probe(probe_text(rules=RULE_LINE, bootsync=block))
    close = vmpath.plan_close("lab", f, vmpath.Rule("eth1", SUBNET), Sent())
    [change] = close.changes
    assert change.vm_new is None  # type: ignore[attr-defined]
    assert "rm -f /var/lib/boot2docker/bootsync.sh" in change.commands()[0].argv[3]


def test_a_block_without_its_end_is_left_alone():
    broken = "#!/bin/sh\n" + vmpath.begin_marker("lab") + "\niptables -L\n"
    assert vmpath.strip_block(broken, "lab") == broken


def test_close_with_nothing_of_labctls_is_empty():
    f = vmpath.parse_probe(probe_text(bootsync="#!/bin/sh\necho mine\n"))
    assert vmpath.plan_close("lab", f, vmpath.Rule("eth1", SUBNET), Sent()).empty


def test_systemd_host_gets_a_drop_in():
    f = vmpath.parse_probe(probe_text(os_id="ubuntu", b2d=False, policy="ACCEPT",
                                      docker="-A DOCKER ! -i docker0 -o docker0 -j DROP\n"))
    assert f.init == "systemd" and f.bridge_drops == ["docker0"] and f.blocked()
    plan, _ = vmpath.plan_open("lab", f, IP, SUBNET, Sent())
    [change] = plan.changes
    command = change.commands()[0].argv[3]
    assert vmpath.DROPIN in command and "systemctl daemon-reload" in command
    assert change.diff().count("+ExecStartPost=") == 1
    dropin = vmpath.dropin_text("lab", vmpath.Rule("eth1", SUBNET))
    f2 = vmpath.parse_probe(probe_text(os_id="ubuntu", b2d=False, rules=RULE_LINE, dropin=dropin))
    assert f2.persisted("lab") and vmpath.plan_open("lab", f2, IP, SUBNET, Sent())[0].empty
    assert not f2.persisted("other")
    close = vmpath.plan_close("lab", f2, vmpath.Rule("eth1", SUBNET), Sent())
    assert "rm -f " + vmpath.DROPIN in close.changes[0].commands()[0].argv[3]


def test_raw_drops_are_read():
    raw = ("-A PREROUTING -d 172.17.0.0/16 -i lo -j ACCEPT\n"
           "-A PREROUTING -d 172.17.0.2/32 ! -i docker0 -j DROP\n")
    f = vmpath.parse_probe(probe_text(raw=raw))
    assert f.raw_drops == [("172.17.0.2/32", "docker0")]


def test_vm_without_the_fixed_ip_plans_nothing_yet():
    f = vmpath.parse_probe(probe_text())
    plan, rule = vmpath.plan_open("lab", f, "192.168.99.77", SUBNET, Sent())
    assert plan.empty and rule is None and "does not hold" in plan.notes[0]


@pytest.mark.parametrize("iface", ["eth1;reboot", "eth1 -j DROP", "$(id)", "a" * 20, "-i"])
def test_hostile_interface_names_never_reach_a_command(iface):
    text = probe_text().replace("3: eth1    inet", f"3: {iface}    inet")
    f = vmpath.parse_probe(text)
    if f.iface_for(IP) is None:  # the parser did not even take it as a name
        return
    with pytest.raises(InvalidInput):
        vmpath.plan_open("lab", f, IP, SUBNET, Sent())


def test_the_shell_it_sends_really_edits_the_file(tmp_path):
    """Run the generated command line with a real sh (iptables stubbed), against a copy of the
    paths under tmp_path: the file ends up exactly as the diff said."""
    user = "#!/bin/sh\necho mine\n"
    f = vmpath.parse_probe(probe_text(bootsync=user))
    plan, _ = vmpath.plan_open("lab", f, IP, SUBNET, Sent())
    [change] = plan.changes
    command = change.commands()[0].argv[3]
    root = tmp_path / "vm"
    target = root / vmpath.BOOTSYNC.lstrip("/")
    target.parent.mkdir(parents=True)
    target.write_text(user)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool, body in (("sudo", 'exec "$@"'), ("iptables", 'echo "iptables $*" >> "$LOG"; [ "$1" != -C ]')):
        (bindir / tool).write_text(f"#!/bin/sh\n{body}\n")
        (bindir / tool).chmod(0o755)
    local = command.replace("/var/lib/boot2docker", str(root) + "/var/lib/boot2docker")
    log = tmp_path / "log"
    r = subprocess.run(["sh", "-c", local], env={"PATH": f"{bindir}:/usr/bin:/bin", "LOG": str(log)},
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert target.read_text() == change.vm_new  # type: ignore[attr-defined]
    assert "iptables -I DOCKER-USER -i eth1 -s 192.168.99.0/24 -j ACCEPT" in log.read_text()

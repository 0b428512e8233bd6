"""The engine's proxies, registry mirrors and insecure registries (labctl.engineconf): strict
checks of what users type, docker-machine's boot2docker profile and config.json edited the way
docker-machine writes them, labctl's ownership (what ``down`` gives back), the systemd drop-in,
and the planner's phases for them (table cases in tests/data/plans/*engine-settings*)."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from labctl import engineconf as ec
from labctl.errors import InvalidInput
from tests.conftest import REPO, fixtures_dir, one_error

BIP = ("bip=172.17.0.1/16", "default-address-pool=base=172.18.0.0/16,size=24")


def dm_profile(env=(), mirrors=(), insecure=(), flags=BIP, driver="vmware") -> str:
    """/var/lib/boot2docker/profile as docker-machine 0.16.2 writes it: its template in
    libmachine/provision/boot2docker.go (GenerateDockerOptions), sent through
    ``printf %s "…" | sudo tee`` (utils.go ConfigureAuth), which turns each ``export \\"%q\\"``
    into ``export "KEY=VALUE"``."""
    return ("\nEXTRA_ARGS='\n" + f"--label provider={driver}\n"
            + "".join(f"--insecure-registry {i}\n" for i in insecure)
            + "".join(f"--registry-mirror {m}\n" for m in mirrors)
            + "".join(f"--{f}\n" for f in flags)
            + "\n'\nCACERT=/var/lib/boot2docker/ca.pem\nDOCKER_HOST='-H tcp://0.0.0.0:2376'\n"
              "DOCKER_STORAGE=aufs\nDOCKER_TLS=auto\nSERVERKEY=/var/lib/boot2docker/server-key.pem\n"
              "SERVERCERT=/var/lib/boot2docker/server.pem\n\n"
            + "".join(f'export "{e}"\n' for e in env) + "\n")


# ---- what users type ---------------------------------------------------------------------------
HOSTILE = [
    "HTTP_PROXY=http://proxy:3128;rm -rf /", "HTTP_PROXY=http://proxy:3128 && reboot",
    "HTTP_PROXY=http://proxy:3128\nexport EVIL=1", 'HTTP_PROXY=http://pro"xy:3128',
    "HTTP_PROXY=http://proxy:3128'", "HTTP_PROXY=http://$(id):3128", "HTTP_PROXY=http://`id`:3128",
    "HTTP_PROXY=http://proxy:3128 extra", "HTTP_PROXY=ftp://proxy:21", "HTTP_PROXY=proxy:3128",
    "HTTP_PROXY=http://proxy:99999", "HTTP_PROXY=http://pröxy:3128", "HTTPS_PROXY=",
    "NO_PROXY=localhost;id", "NO_PROXY=a b", "NO_PROXY=localhost,,x", "NO_PROXY=$(id)",
    "no_proxy=localhost\n", "FOO=bar baz", "FOO=a'b", "FOO=a\\b", "FOO=$HOME", "FOO=%n",
    "PATH=/tmp", "LD_PRELOAD=/tmp/x.so", "DOCKER_HOST=tcp://x", "1BAD=x", "BAD-KEY=x", "NOEQUALS",
    "=value", "K\x00=v",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_engine_env_is_refused_with_one_line(text):
    with pytest.raises(InvalidInput) as exc:
        ec.env_entry(text)
    assert "\n" not in exc.value.message and "Traceback" not in exc.value.message


@pytest.mark.parametrize("text,want", [
    ("HTTP_PROXY=http://192.0.2.1:3128", ("HTTP_PROXY", "http://192.0.2.1:3128")),
    ("https_proxy=http://user:p%40ss@proxy.corp.example:8080/",
     ("https_proxy", "http://user:p%40ss@proxy.corp.example:8080/")),
    ("NO_PROXY=localhost, 127.0.0.1 ,.corp.example,10.0.0.0/8,*.svc,[::1]",
     ("NO_PROXY", "localhost,127.0.0.1,.corp.example,10.0.0.0/8,*.svc,[::1]")),
    ("DOCKER_RAMDISK=true", None),
    ("GODEBUG=x509ignoreCN=0", ("GODEBUG", "x509ignoreCN=0")),
])
def test_engine_env_values_that_pass(text, want):
    if want is None:  # DOCKER_* would change how docker itself runs
        with pytest.raises(InvalidInput):
            ec.env_entry(text)
        return
    assert ec.env_entry(text) == want


@pytest.mark.parametrize("bad", ["mirror.example", "https://mirror.example;id", "https://m irror",
                                 "file:///etc/passwd", "https://mirror.example:0", "https://$(id)",
                                 "https://mirror.example/'x'", ""])
def test_hostile_mirrors_are_refused(bad):
    with pytest.raises(InvalidInput):
        ec.mirror(bad)


@pytest.mark.parametrize("bad", ["registry:5000;id", "reg istry", "http://registry:5000", "reg\nistry",
                                 "registry:70000", "", "-registry", "registry:5000 --debug"])
def test_hostile_insecure_registries_are_refused(bad):
    with pytest.raises(InvalidInput):
        ec.insecure_registry(bad)


def test_descriptions_do_not_repeat_a_proxy_password():
    s = ec.wanted(["HTTPS_PROXY=http://me:s3cret@proxy:3128"])
    assert ec.describe(s) == "HTTPS_PROXY=http://me:***@proxy:3128"
    assert ec.create_flags(s) == ["--engine-env", "HTTPS_PROXY=http://me:s3cret@proxy:3128"]


def test_good_mirrors_and_registries():
    assert ec.mirror("https://mirror.corp.example:5000/v2") == "https://mirror.corp.example:5000/v2"
    assert ec.insecure_registry("registry.lab.example:5000") == "registry.lab.example:5000"
    assert ec.insecure_registry("10.20.0.0/16") == "10.20.0.0/16"
    assert ec.insecure_registry("[fd00::1]:5000") == "[fd00::1]:5000"


def test_lab_toml_keys_and_flags_are_checked_with_the_key_named(tmp_path):
    from labctl import labspec

    (tmp_path / "lab.toml").write_text(
        '[defaults]\nengine_env = ["HTTPS_PROXY=http://proxy:3128"]\n'
        '[[machine]]\nname = "a"\nregistry_mirrors = ["https://mirror.example"]\n'
        'insecure_registries = ["registry.lab:5000"]\n')
    a = labspec.load(tmp_path / "lab.toml", "linux").machines[0]
    assert a.engine_settings == ec.Settings(("HTTPS_PROXY=http://proxy:3128",), ("https://mirror.example",),
                                            ("registry.lab:5000",))
    (tmp_path / "lab.toml").write_text('[[machine]]\nname = "a"\nengine_env = ["HTTP_PROXY=http://x;id"]\n')
    with pytest.raises(InvalidInput, match=r"#1 \(a\): engine_env: engine env HTTP_PROXY 'http://x;id' is "
                                           "not an http"):
        labspec.load(tmp_path / "lab.toml", "linux")
    (tmp_path / "lab.toml").write_text('[[machine]]\nname = "a"\nregistry_mirrors = "https://m.example"\n')
    with pytest.raises(InvalidInput, match="registry_mirrors: expected a list"):
        labspec.load(tmp_path / "lab.toml", "linux")


def test_cli_refuses_hostile_values_before_anything(tmp_path):
    """A real subprocess: one line, exit 2, no traceback, nothing written anywhere."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LABCTL_STATE_DIR": str(tmp_path / "state"),
           "LABCTL_ROOT": str(tmp_path / "root"), "PYTHONPATH": str(REPO)}
    for flag, value, words in (("--engine-env", "HTTP_PROXY=http://x:1;touch /tmp/pwned", "not an http"),
                               ("--engine-env", "NO_PROXY=a\nb", "control character"),
                               ("--registry-mirror", "https://m.example`id`", "not an http"),
                               ("--insecure-registry", "reg:5000 --debug", "HOST[:PORT]")):
        r = subprocess.run([sys.executable, "-m", "labctl", "up", "--dry-run", flag, value],
                           capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 2, r.stderr
        assert words in one_error(r.stderr) and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "state").exists() and not (tmp_path / "root").exists()


# ---- the profile, as docker-machine writes it ---------------------------------------------------------
def test_profile_is_read_and_written_as_docker_machine_does():
    s = ec.Settings(("HTTP_PROXY=http://192.0.2.1:3128", "NO_PROXY=localhost,192.168.99.0/24"),
                    ("https://mirror.example",), ("registry.lab:5000", "10.9.0.0/16"))
    plain = dm_profile()
    full = dm_profile(s.env, s.mirrors, s.insecure)
    assert ec.profile_settings(full) == s
    assert ec.profile_settings(plain) == ec.Settings()
    # labctl's edit gives exactly what docker-machine create would have written, both ways
    assert ec.render_profile(plain, s) == full
    assert ec.render_profile(full, ec.Settings()) == plain
    assert ec.render_profile(full, s) == full
    # a line the user added stays where it was
    custom = plain.replace("DOCKER_TLS=auto\n", "DOCKER_TLS=auto\n# mine\nexport FOO=bar\n")
    out = ec.render_profile(custom, s)
    assert "# mine\nexport FOO=bar\n" in out and ec.profile_settings(out) == s


def test_config_json_keeps_everything_but_the_three_lists():
    data = (fixtures_dir("docker-machine") / "machines-lab-config.json").read_bytes()
    s = ec.Settings(("HTTPS_PROXY=http://p:1",), ("https://m.example",), ("r:5000",))
    new = ec.config_with(data, s)
    assert ec.Settings.of_config(new) == s
    before, after = json.loads(data), json.loads(new)
    for key in ("Env", "RegistryMirror", "InsecureRegistry"):
        after["HostOptions"]["EngineOptions"][key] = before["HostOptions"]["EngineOptions"][key]
    assert after == before
    assert ec.config_with(data, ec.Settings()) == data  # nothing to change: the same bytes
    assert json.loads(ec.config_with(new, ec.Settings())) == before


# ---- ownership: what labctl adds comes off again ------------------------------------------------------
def test_no_proxy_gets_the_lab_appended_and_keeps_the_users_entries():
    lab = ["192.168.99.0/24", "172.17.0.0/16", "172.18.0.0/16", "192.168.99.3"]
    want = ec.wanted(["HTTPS_PROXY=http://p:3128", "NO_PROXY=localhost,172.16.0.0/12"])
    got, appended = ec.target(ec.Settings(), want, lab)
    env = got.env_dict()
    assert env["NO_PROXY"] == env["no_proxy"] == "localhost,172.16.0.0/12,192.168.99.0/24,192.168.99.3"
    assert appended == ["192.168.99.0/24", "192.168.99.3"]  # 172.16/12 already holds the engine's
    # no proxy: NO_PROXY is left as given
    assert ec.target(ec.Settings(), ec.wanted(["FOO=1"]), lab)[0].env == ("FOO=1",)
    # "*" leaves everything out already
    assert ec.target(ec.Settings(), ec.wanted(["HTTP_PROXY=http://p:1", "no_proxy=*"]), lab)[1] == []


def test_base_of_what_labctl_made_is_what_was_there_before():
    """Property: whatever was there and whatever is wanted, taking labctl's part off the
    result gives back what was there (down), and doing it again changes nothing (up twice)."""
    rng = random.Random(7)
    keys = ["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "no_proxy", "FOO"]
    values = {"HTTP_PROXY": ["http://a:1", "http://b:2"], "HTTPS_PROXY": ["http://a:1", "http://c:3"],
              "NO_PROXY": ["localhost", "10.0.0.0/8"], "no_proxy": ["localhost"], "FOO": ["1", "2"]}
    lab = ["192.168.99.0/24", "172.17.0.0/16", "192.168.99.3"]
    for _ in range(500):
        def pick() -> ec.Settings:
            ks = rng.sample(keys, rng.randint(0, 3))
            mirrors = ["https://m1.example", "https://m2.example"]
            return ec.Settings(tuple(f"{k}={rng.choice(values[k])}" for k in ks),
                               tuple(rng.sample(mirrors, rng.randint(0, 2))),
                               tuple(rng.sample(["r1:5000", "r2:5000"], rng.randint(0, 2))))
        there, want = pick(), pick()
        made, _ = ec.target(there, want, lab)
        owns = ec.owned(there, made)
        assert ec.base(made, owns).same(there), (there, want, made, owns)
        again, _ = ec.target(ec.base(made, owns), want, lab)
        assert again.same(made) and ec.owned(ec.base(made, owns), again) == owns


# ---- systemd hosts ---------------------------------------------------------------------------------------
MACHINE_CONF = ("[Service]\nExecStart=\nExecStart=/usr/bin/dockerd -H tcp://0.0.0.0:2376 "
                "--label provider=generic --registry-mirror https://m.example --bip=172.17.0.1/16 \n"
                'Environment="FOO=1" \n')


def test_systemd_hosts_get_labctls_drop_in_and_keep_docker_machines():
    facts = ec.EngineFacts(os_id="debian", machine_conf=MACHINE_CONF, complete=True)
    assert facts.settings() == ec.Settings(("FOO=1",), ("https://m.example",))
    s = ec.Settings(("FOO=1", "HTTPS_PROXY=http://p:3128", "NO_PROXY=192.168.99.0/24"), ("https://m.example",))
    edit = ec.plan_vm("arm", facts, s, "set proxies")
    assert edit is not None and edit.vm_path == ec.DROPIN and edit.vm_old is None
    assert edit.vm_new == (f"{ec.DROPIN_HEAD}arm; labctl down removes it\n"
                           "# the engine's proxies and other environment (labctl up --engine-env)\n"
                           '[Service]\nEnvironment="HTTPS_PROXY=http://p:3128"\n'
                           'Environment="NO_PROXY=192.168.99.0/24"\n')
    assert "systemctl daemon-reload && systemctl restart docker" in edit.command
    done = ec.EngineFacts(os_id="debian", machine_conf=MACHINE_CONF, dropin=edit.vm_new, complete=True)
    assert done.settings().same(s) and ec.plan_vm("arm", done, s, "x") is None
    back = ec.plan_vm("arm", done, facts.settings(), "remove")
    assert back is not None and back.vm_new is None and back.command.startswith("sudo sh -c 'rm -f ")
    with pytest.raises(ec.Unsupported):  # mirrors are docker-machine's ExecStart flags there
        ec.plan_vm("arm", facts, ec.Settings(("FOO=1",), ()), "x")


def test_probe_output_gives_files_back_byte_for_byte():
    """The probe's sections start with a newline: a file without a final newline comes back
    as it is, one with blank lines at its end too."""
    import shutil

    out = subprocess.run(["sh", "-c", ec.probe_script().replace("sudo ", "")], capture_output=True, text=True)
    facts = ec.parse_probe(out.stdout)
    assert facts.complete
    sh = shutil.which("sh")
    assert sh is not None
    text = (f"printf '\\n{ec.SEP} os\\nID=boot2docker\\n'; printf '\\n{ec.SEP} profile\\npresent\\n'; "
            f"printf 'A=1\\n\\n\\n'; printf '\\n{ec.SEP} dropin\\npresent\\n'; printf 'x'; "
            f"printf '\\n{ec.SEP} end\\n'")
    facts = ec.parse_probe(subprocess.run([sh, "-c", text], capture_output=True, text=True).stdout)
    assert facts.init == "boot2docker" and facts.profile == "A=1\n\n\n" and facts.dropin == "x"


def test_planner_on_a_systemd_host_uses_labctls_drop_in_and_refuses_new_mirrors(tmp_path, monkeypatch):
    from labctl import planner
    from labctl.errors import Conflict
    from tests import test_planner as tp

    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path / "state"))
    case = tp.load(tp.CASES / "up-existing-engine-settings-changed.json")
    conf = MACHINE_CONF.replace("--registry-mirror https://m.example ", "")
    case["world"]["machines"]["lab"]["engine_conf"] = {"os": "debian", "machine_conf": conf}
    case["up"] = {"name": "lab", "engine_env": ["HTTPS_PROXY=http://192.0.2.1:3128"]}
    plan = tp.run_case(case)
    engine = next(p for p in plan.phases if p.key == "engine:lab")
    restart = next(c for c in engine.changes if type(c).__name__ == "VmEngineRestart")
    assert restart.vm_path == ec.DROPIN, engine.changes
    assert 'Environment="HTTPS_PROXY=http://192.0.2.1:3128"' in restart.vm_new
    assert planner.plan_up(plan.world, tp.spec_of(case)).changes == []
    case["up"]["registry_mirrors"] = ["https://mirror.corp.example"]
    with pytest.raises(Conflict, match="systemd host: its registry mirrors"):
        tp.run_case(case)

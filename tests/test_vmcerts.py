"""labctl.vmcerts: CA files in (PEM, DER, refused), the VM's answer parsed, and the pure plans
(install only what is missing, restart the engine once and only after a change; remove only
labctl's files).  Certificates are made by the real openssl."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from labctl import vmcerts
from labctl.errors import InvalidInput
from labctl.labspec import load

SSH_CALLS: list[str] = []


def ssh(command: str) -> None:
    SSH_CALLS.append(command)


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ca")
    for name in ("one", "two"):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{name}-key.pem",
                        "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN=corp {name}"],
                       cwd=d, check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-in", "one.pem", "-outform", "DER", "-out", "one.cer"],
                   cwd=d, check=True, capture_output=True)
    (d / "both.pem").write_text((d / "one.pem").read_text() + "\n" + (d / "two.pem").read_text())
    return {p.name: p for p in d.iterdir()}


def test_pem_and_der_are_the_same_certificate(ca):
    pem, der = vmcerts.load_certs([ca["one.pem"]]), vmcerts.load_certs([ca["one.cer"]])
    assert pem[0].der == der[0].der == ca["one.cer"].read_bytes()
    assert der[0].pem == ca["one.pem"].read_text()  # DER converted to the PEM openssl writes
    assert der[0].stem == "labctl-" + der[0].sha256[:16]
    # a bundle: each certificate once, duplicates across files dropped
    both = vmcerts.load_certs([ca["both.pem"], ca["one.cer"]])
    assert [c.pem for c in both] == [ca["one.pem"].read_text(), ca["two.pem"].read_text()]


@pytest.mark.parametrize("content, words", [
    (b"hello", "not a PEM or DER X.509 certificate"),
    (b"\x30\x03\x02\x01\x00", "not a PEM or DER X.509 certificate"),
    (b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n", "not valid base64"),
    (b"-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n", "does not hold an X.509"),
    (b"-----BEGIN PUBLIC KEY-----\nMAMCAQA=\n-----END PUBLIC KEY-----\n", "no CERTIFICATE block"),
])
def test_anything_else_is_refused_with_one_line(tmp_path, content, words):
    f = tmp_path / "x.crt"
    f.write_bytes(content)
    with pytest.raises(InvalidInput) as exc:
        vmcerts.load_certs([f])
    assert words in exc.value.message and "\n" not in exc.value.message


def test_private_keys_and_missing_files_are_refused(ca, tmp_path):
    with pytest.raises(InvalidInput, match="holds a private key"):
        vmcerts.load_certs([ca["one-key.pem"]])
    with pytest.raises(InvalidInput, match="no such file"):
        vmcerts.load_certs([tmp_path / "nope.pem"])
    with pytest.raises(InvalidInput, match="is a directory"):
        vmcerts.load_certs([tmp_path])


def probe_output(os_id: str, files: dict[str, str], b2d: bool = True) -> str:
    """What the VM prints for probe_script() (the shell of the probe, run by sh here)."""
    out = [f"{vmcerts.SEP} os", f"ID={os_id}", f"{vmcerts.SEP} b2d"] + (["yes"] if b2d else [])
    text = "\n".join(out) + "\n"
    for path, body in files.items():
        text += f"{vmcerts.SEP} file {path}\n{body}"
    return text + f"{vmcerts.SEP} end\n"


def test_probe_script_runs_and_parses(tmp_path):
    res = subprocess.run(["sh", "-c", vmcerts.probe_script()], capture_output=True, text=True)
    facts = vmcerts.parse_probe(res.stdout)
    assert facts.complete and facts.files == {}  # this machine has no labctl CA files


def test_install_writes_missing_then_restarts_once_and_is_idempotent(ca):
    one, two = vmcerts.load_certs([ca["one.pem"]]) + vmcerts.load_certs([ca["two.pem"]])
    facts = vmcerts.parse_probe(probe_output("boot2docker", {}))
    assert facts.init == "boot2docker" and facts.complete
    plan = vmcerts.plan_install("lab", facts, [one, two], ssh)
    assert len(plan.changes) == 3
    text = plan.render()
    assert f"+++ /var/lib/boot2docker/certs/{one.stem}.pem" in text
    assert text.count("/etc/init.d/docker restart") == 1
    assert f"ln -sfT /var/lib/boot2docker/certs/{one.stem}.pem " \
           f"/usr/local/share/ca-certificates/boot2docker/{one.stem}.pem.crt" in text
    # one already there: only the other is written; both there: nothing, no restart
    facts = vmcerts.parse_probe(probe_output("boot2docker", {facts.path_for(one): one.pem}))
    assert [c.vm_path for c in vmcerts.plan_install("lab", facts, [one, two], ssh).changes] == \
        [facts.path_for(two), ""]
    facts.files[facts.path_for(two)] = two.pem
    plan = vmcerts.plan_install("lab", facts, [one, two], ssh)
    assert plan.empty and plan.notes == ["lab already trusts these CAs"]


def test_debian_hosts_use_update_ca_certificates(ca):
    one = vmcerts.load_certs([ca["one.cer"]])[0]
    facts = vmcerts.parse_probe(probe_output("ubuntu", {}, b2d=False))
    assert facts.init == "systemd"
    text = vmcerts.plan_install("adopted", facts, [one], ssh).render()
    assert f"+++ /usr/local/share/ca-certificates/labctl/{one.stem}.crt" in text
    assert "update-ca-certificates" in text and "systemctl restart docker" in text


def test_remove_takes_only_labctls_files(ca):
    one = vmcerts.load_certs([ca["one.pem"]])[0]
    mine = f"/var/lib/boot2docker/certs/{one.stem}.pem"
    text = probe_output("boot2docker", {mine: one.pem, "/var/lib/boot2docker/certs/corp.pem": "x\n"})
    facts = vmcerts.parse_probe(text)
    assert list(facts.files) == [mine]  # a file labctl did not name is not even read as its own
    plan = vmcerts.plan_remove("lab", facts, ssh)
    assert [c.vm_path for c in plan.changes] == [mine, ""]
    assert f"rm -f /usr/local/share/ca-certificates/boot2docker/{one.stem}.pem.crt" in plan.render()
    assert vmcerts.plan_remove("lab", vmcerts.parse_probe(probe_output("boot2docker", {})), ssh).empty
    SSH_CALLS.clear()
    plan.changes[0].apply(None)  # type: ignore[arg-type]
    want = [f"sudo sh -c 'rm -f {mine}'"]
    assert want == SSH_CALLS


def test_lab_toml_ca_certs_relative_to_the_file(ca, tmp_path):
    (tmp_path / "lab.toml").write_text(f'[defaults]\nca_certs = ["{ca["one.cer"]}"]\n'
                                       '[[machine]]\nname = "a"\n'
                                       '[[machine]]\nname = "b"\nca_certs = ["certs/two.pem"]\n')
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "two.pem").write_text(ca["two.pem"].read_text())
    spec = load(tmp_path / "lab.toml", "linux")
    a, b = spec.machines
    assert [c.pem for c in a.ca_certs] == [ca["one.pem"].read_text()]
    assert [c.pem for c in b.ca_certs] == [ca["two.pem"].read_text()]
    (tmp_path / "lab.toml").write_text('[[machine]]\nname = "a"\nca_certs = ["nope.pem"]\n')
    where = r"lab.toml \[\[machine\]\] #1 \(a\): ca_certs: .*/nope.pem: no such file"
    with pytest.raises(InvalidInput, match=where):
        load(tmp_path / "lab.toml", "linux")

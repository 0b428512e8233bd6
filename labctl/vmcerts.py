"""A corporate root CA in the Docker host, so the engine trusts a TLS-inspecting proxy or an
internal registry (``docker pull`` fails with ``x509: certificate signed by unknown authority``
until it does).

Where the CA goes is how each host builds its system trust store, which is what dockerd
trusts for every registry (Docker Hub behind a TLS-inspecting proxy included):

* boot2docker: ``/var/lib/boot2docker/certs/*.pem`` (persistent disk).  At every boot,
  boot2docker's ``/bootsync.sh`` (files/bootsync.sh in the boot2docker repository) links each
  ``certs/*.pem|*.crt`` into ``/usr/local/share/ca-certificates/boot2docker/`` (adding ``.crt``)
  and runs ``/usr/local/tce.installed/ca-certificates`` before it starts dockerd.  labctl writes
  the file there and, for the running VM, does those two steps itself and restarts the engine
  with ``/etc/init.d/docker restart`` (dockerd reads the system store when it starts).
* Ubuntu/Debian (systemd) hosts: ``/usr/local/share/ca-certificates/labctl/*.crt`` (PEM, one
  certificate per file, ``.crt``: update-ca-certificates(8)), ``update-ca-certificates``, then
  ``systemctl restart docker``.

labctl's files are named ``labctl-<sha256 of the certificate>``: a certificate already there is
not written again, the engine is restarted only when a file changed, and ``down`` removes
exactly labctl's files (then refreshes the store and restarts the engine once).
Accepted input: PEM (one or more CERTIFICATE blocks) or DER (converted to PEM); anything else,
including a file with a private key in it, is refused with one line.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import shlex
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from labctl.errors import InvalidInput
from labctl.plan import Command, Plan
from labctl.vmfile import replace_cmd
from labctl.vmpath import Ssh, VmChange

B2D_DIR = "/var/lib/boot2docker/certs"
B2D_LINKS = "/usr/local/share/ca-certificates/boot2docker"
B2D_REFRESH = "/usr/local/tce.installed/ca-certificates"
B2D_RESTART = "/etc/init.d/docker restart"
DEB_DIR = "/usr/local/share/ca-certificates/labctl"
DEB_REFRESH = "update-ca-certificates"
DEB_RESTART = "systemctl restart docker"
PREFIX = "labctl-"
SEP = "@@labctl-certs@@"
MAX_BYTES = 1 << 20
_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)
_NAME = re.compile(r"^labctl-[0-9a-f]{16}\.(pem|crt)$")


# ---- certificates ------------------------------------------------------------------------------
@dataclass(frozen=True)
class CaCert:
    der: bytes
    source: str = ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.der).hexdigest()

    @property
    def stem(self) -> str:
        return PREFIX + self.sha256[:16]

    @property
    def pem(self) -> str:
        return ssl.DER_cert_to_PEM_cert(self.der)


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER element at ``pos``."""
    if pos + 2 > len(data):
        raise ValueError("truncated")
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or pos + n > len(data):
            raise ValueError("bad length")
        length = int.from_bytes(data[pos:pos + n], "big")
        pos += n
    if pos + length > len(data):
        raise ValueError("truncated")
    return tag, pos, pos + length


def is_certificate(der: bytes) -> bool:
    """Whether ``der`` is exactly one DER X.509 Certificate: SEQUENCE { tbsCertificate
    SEQUENCE, signatureAlgorithm SEQUENCE, signatureValue BIT STRING } and nothing after it."""
    try:
        tag, start, end = _tlv(der, 0)
        if tag != 0x30 or end != len(der):
            return False
        tags = []
        pos = start
        while pos < end:
            t, _, nxt = _tlv(der, pos)
            tags.append(t)
            pos = nxt
        return tags == [0x30, 0x30, 0x03]
    except ValueError:
        return False


def parse_certs(data: bytes, source: str) -> list[CaCert]:
    """PEM (every CERTIFICATE block) or DER bytes -> certificates; anything else: InvalidInput."""
    what = f"{source}: "
    if b"-----BEGIN" in data:
        blocks = _PEM.findall(data)
        if any(b"PRIVATE KEY" in kind for kind, _ in blocks):
            raise InvalidInput(what + "holds a private key; give only the CA certificate")
        certs = []
        for kind, body in blocks:
            if kind != b"CERTIFICATE":
                continue
            try:
                der = base64.b64decode(b"".join(body.split()), validate=True)
            except (binascii.Error, ValueError):
                raise InvalidInput(what + "a PEM CERTIFICATE block is not valid base64") from None
            if not is_certificate(der):
                raise InvalidInput(what + "a PEM CERTIFICATE block does not hold an X.509 certificate")
            certs.append(CaCert(der, source))
        if not certs:
            raise InvalidInput(what + "no CERTIFICATE block in this PEM file")
        return certs
    if is_certificate(data):
        return [CaCert(data, source)]
    raise InvalidInput(what + "not a PEM or DER X.509 certificate")


def load_certs(paths: Iterable[str | Path]) -> list[CaCert]:
    """Read every file (PEM or DER); one clear line for the first bad one; duplicates once."""
    out: dict[str, CaCert] = {}
    for p in paths:
        path = Path(p).expanduser()
        try:
            if path.stat().st_size > MAX_BYTES:
                raise InvalidInput(f"{path}: larger than 1 MiB; not a CA certificate")
            data = path.read_bytes()
        except FileNotFoundError:
            raise InvalidInput(f"{path}: no such file") from None
        except IsADirectoryError:
            raise InvalidInput(f"{path}: is a directory; give the CA certificate file") from None
        except OSError as exc:
            raise InvalidInput(f"{path}: cannot read it ({exc.strerror or exc})") from None
        for cert in parse_certs(data, str(path)):
            out.setdefault(cert.sha256, cert)
    return list(out.values())


# ---- facts -------------------------------------------------------------------------------------
def probe_script() -> str:
    """One read-only shell command: the host's kind and labctl's CA files with their content."""
    files = f"{B2D_DIR}/{PREFIX}*.pem {DEB_DIR}/{PREFIX}*.crt"
    return (f"echo '{SEP} os'; cat /etc/os-release 2>/dev/null; "
            f"echo '{SEP} b2d'; [ -d /var/lib/boot2docker ] && echo yes; "
            f"for f in {files}; do [ -f \"$f\" ] && {{ echo \"{SEP} file $f\"; cat \"$f\"; }}; done; "
            f"echo '{SEP} end'")


@dataclass
class CertFacts:
    os_id: str = ""
    boot2docker: bool = False
    files: dict[str, str] = field(default_factory=dict)  # labctl's CA files: path -> content
    complete: bool = False  # the probe ran to its end

    @property
    def init(self) -> str:
        return "boot2docker" if self.boot2docker or self.os_id == "boot2docker" else "systemd"

    def path_for(self, cert: CaCert) -> str:
        if self.init == "boot2docker":
            return f"{B2D_DIR}/{cert.stem}.pem"
        return f"{DEB_DIR}/{cert.stem}.crt"


def parse_probe(text: str) -> CertFacts:
    f = CertFacts()
    section = ""
    current: list[str] | None = None
    for line in text.splitlines(keepends=True):
        if line.startswith(SEP + " "):
            words = line[len(SEP) + 1:].strip().split(" ", 1)
            section = words[0]
            current = None
            if section == "file" and len(words) == 2 and _NAME.match(words[1].rsplit("/", 1)[-1]):
                current = []
                f.files[words[1]] = ""
            elif section == "end":
                f.complete = True
            continue
        if section == "os":
            key, _, value = line.strip().partition("=")
            if key == "ID":
                f.os_id = value.strip('"')
        elif section == "b2d":
            f.boot2docker = f.boot2docker or line.strip() == "yes"
        elif section == "file" and current is not None:
            path = list(f.files)[-1]
            f.files[path] += line
    return f


# ---- planners ----------------------------------------------------------------------------------
def _refresh(facts: CertFacts, added: list[str], removed: list[str]) -> list[str]:
    """What the host does at boot with its CA files, done now (boot2docker: bootsync's links and
    the ca-certificates script; systemd hosts: update-ca-certificates)."""
    if facts.init != "boot2docker":
        return [f"{DEB_REFRESH} >/dev/null"]
    script = [f"rm -f {B2D_LINKS}/{p.rsplit('/', 1)[-1]}.crt" for p in removed]
    for p in added:
        script.append(f"mkdir -p {B2D_LINKS} && ln -sfT {p} {B2D_LINKS}/{p.rsplit('/', 1)[-1]}.crt")
    script.append(f"{B2D_REFRESH} >/dev/null")
    return script


def _restart(facts: CertFacts) -> str:
    return B2D_RESTART if facts.init == "boot2docker" else DEB_RESTART


def _change(name: str, description: str, script: list[str], ssh: Ssh, binary: str,
            vm_path: str = "", old: str | None = None, new: str | None = None) -> VmChange:
    command = f"sudo sh -c {shlex.quote(' && '.join(script))}"
    return VmChange(description, command, ssh, [Command([binary, "ssh", name, command])],
                    vm_path=vm_path, vm_old=old, vm_new=new)


def plan_install(name: str, facts: CertFacts, certs: list[CaCert], ssh: Ssh,
                 binary: str = "docker-machine") -> Plan:
    """Pure: write the CA files that are missing or differ, refresh the store, restart the
    engine once; nothing when every certificate is in place."""
    plan = Plan(f"trust {len(certs)} CA certificate(s) in {name}'s engine")
    written: list[str] = []
    for cert in certs:
        path = facts.path_for(cert)
        old = facts.files.get(path)
        if old == cert.pem:
            continue
        plan.add(_change(name, f"install the CA certificate from {cert.source or 'the lab spec'} "
                               f"(sha256 {cert.sha256[:16]}…) in {name} as {path}",
                         [replace_cmd(path, cert.pem, mode="644")], ssh, binary, path, old, cert.pem))
        written.append(path)
    if written:
        plan.add(_change(name, f"refresh {name}'s CA store and restart its engine so dockerd "
                               "trusts the new CA (containers without a restart policy stop)",
                         [*_refresh(facts, written, []), _restart(facts)], ssh, binary))
    else:
        plan.notes.append(f"{name} already trusts {'this CA' if len(certs) == 1 else 'these CAs'}")
    return plan


def plan_remove(name: str, facts: CertFacts, ssh: Ssh, binary: str = "docker-machine") -> Plan:
    """Pure: remove every CA file labctl wrote (nothing else), refresh, restart once."""
    plan = Plan(f"remove labctl's CA certificates from {name}")
    gone = sorted(facts.files)
    if not gone:
        return plan
    for path in gone:
        plan.add(_change(name, f"remove labctl's CA certificate {path} from {name}",
                         [f"rm -f {path}"], ssh, binary, path, facts.files[path], None))
    plan.add(_change(name, f"refresh {name}'s CA store and restart its engine (containers "
                           "without a restart policy stop)",
                     [*_refresh(facts, [], gone), _restart(facts)], ssh, binary))
    return plan

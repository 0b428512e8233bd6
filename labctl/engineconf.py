"""The lab engine's environment (HTTP(S)_PROXY, NO_PROXY, …), registry mirrors and insecure
registries: ``labctl up --engine-env KEY=VALUE --registry-mirror URL --insecure-registry HOST``.

Where each lives (docker-machine 0.16.2, libmachine/provision):

* docker-machine's record, ``machines/NAME/config.json``: ``HostOptions.EngineOptions`` ``Env``,
  ``RegistryMirror``, ``InsecureRegistry``.  ``docker-machine create --engine-env …
  --engine-registry-mirror … --engine-insecure-registry …`` fills them, and every
  re-provisioning (``regenerate-certs``, ``provision``) writes the engine's file in the VM again
  from them; so labctl keeps that record truthful when it changes the VM.
* boot2docker: ``/var/lib/boot2docker/profile`` (persistent disk), which its
  ``/etc/init.d/docker`` sources: ``--insecure-registry X`` / ``--registry-mirror X`` lines in
  ``EXTRA_ARGS='…'`` and one ``export "KEY=VALUE"`` line per variable (docker-machine's
  template).  labctl edits those lines the way docker-machine writes them, then restarts the
  engine.
* systemd hosts (a VM labctl adopts: the generic driver): docker-machine's drop-in
  ``10-machine.conf`` carries what ``create`` was given; labctl's own drop-in
  ``30-labctl-engine.conf`` adds ``Environment=`` lines (a later drop-in wins), then
  ``systemctl daemon-reload`` and a restart.  Mirrors and insecure registries are flags of
  docker-machine's ``ExecStart=`` there; labctl sets them when it provisions the VM only.

Ownership: labctl's record (state.json, ``engine_settings``) names the variables it set (and
the values it replaced), the mirrors and registries it added; ``down`` puts back exactly what
was there before, nothing else.  When a proxy is set, ``NO_PROXY`` and ``no_proxy`` get the lab's
subnets (the vmnet, the engine's bip and address pool) and the fixed IP appended when missing,
else the engine would send lab traffic to the proxy; the user's entries stay.

Every value is checked here (:func:`env_entry`, :func:`mirror`, :func:`insecure_registry`):
nothing a shell, the profile or a unit file reads specially gets through.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from labctl.errors import InvalidInput
from labctl.vmfile import replace_cmd

PROFILE = "/var/lib/boot2docker/profile"
MACHINE_DROPIN = "/etc/systemd/system/docker.service.d/10-machine.conf"
DROPIN = "/etc/systemd/system/docker.service.d/30-labctl-engine.conf"
DROPIN_HEAD = "# written by labctl for the lab machine "
B2D_RESTART = "/etc/init.d/docker restart"
SYSTEMD_RESTART = "systemctl daemon-reload && systemctl restart docker"
SEP = "@@labctl-engine@@"

PROXY_KEYS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
NO_PROXY_KEYS = ("NO_PROXY", "no_proxy")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_REFUSED_KEYS = re.compile(r"^(PATH|HOME|LD_[A-Z_]*|DOCKER_[A-Z_]*)$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = rf"{_LABEL}(?:\.{_LABEL})*"
_IPV4 = r"\d{1,3}(?:\.\d{1,3}){3}"
_HOST = rf"(?:{_HOSTNAME}|{_IPV4}|\[[0-9A-Fa-f:.]+\])"
_PORT = r"(?::\d{1,5})?"
_URL = re.compile(rf"^(https?)://(?:([A-Za-z0-9._~%-]+(?::[A-Za-z0-9._~%-]*)?)@)?({_HOST}){_PORT}"
                  r"(/[A-Za-z0-9._~%/-]*)?$")
_REGISTRY = re.compile(rf"^{_HOST}{_PORT}$")
_NO_PROXY_ENTRY = re.compile(rf"^(?:\*|\.?(?:\*\.)?{_HOSTNAME}{_PORT}|{_IPV4}(?:/\d{{1,2}})?{_PORT}|"
                             r"\[[0-9A-Fa-f:.]+\](?::\d{1,5})?|[0-9A-Fa-f:]+::?[0-9A-Fa-f:]*(?:/\d{1,3})?)$")
_PLAIN = re.compile(r"^[A-Za-z0-9._:/,=@+-]{0,1024}$")
MAX_VALUE = 2048
_CREDENTIALS = re.compile(r"(://[A-Za-z0-9._~%-]+:)[A-Za-z0-9._~%-]*@")


# ---- checking what users type --------------------------------------------------------------
def _url(value: str, what: str) -> str:
    m = _URL.fullmatch(value)
    if not m or len(value) > MAX_VALUE:
        raise InvalidInput(f"{what} {value!r} is not an http(s)://host[:port][/path] URL",
                           "e.g. http://proxy.example.com:3128 (credentials percent-encoded)")
    port = value.split("//", 1)[1].split("@")[-1].split("/", 1)[0].rpartition("]")[2]
    if ":" in port and not 0 < int(port.rsplit(":", 1)[1]) < 65536:
        raise InvalidInput(f"{what} {value!r} has a port out of range")
    return value


def env_entry(text: Any) -> tuple[str, str]:
    """``KEY=VALUE`` for ``--engine-env``: a variable name; proxies must be URLs, NO_PROXY a
    comma-separated list of hosts, domains, addresses or CIDRs; any other value plain
    characters only.  Returns (key, normalised value)."""
    if not isinstance(text, str) or "=" not in text:
        raise InvalidInput(f"engine env {text!r} must look like KEY=VALUE, e.g. "
                           "HTTPS_PROXY=http://proxy.example.com:3128")
    key, value = text.split("=", 1)
    if not _KEY.fullmatch(key):
        raise InvalidInput(f"engine env {text!r}: {key!r} is not a variable name")
    if _REFUSED_KEYS.fullmatch(key):
        raise InvalidInput(f"engine env {key} would change how the engine itself runs; labctl does "
                           "not set it", "give proxies (HTTP_PROXY, HTTPS_PROXY, NO_PROXY) and the like")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidInput(f"engine env {key}: the value contains a control character")
    if key.upper() in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        return key, _url(value, f"engine env {key}")
    if key.upper() == "NO_PROXY":
        entries = [e.strip() for e in value.split(",")]
        if not value.strip() or any(not e for e in entries):
            raise InvalidInput(f"engine env {key}: {value!r} has an empty entry",
                               "a comma-separated list such as localhost,.corp.example,10.0.0.0/8")
        for e in entries:
            if not _NO_PROXY_ENTRY.fullmatch(e):
                raise InvalidInput(f"engine env {key}: {e!r} is not a host, domain, address or CIDR")
        return key, ",".join(entries)
    if not _PLAIN.fullmatch(value):
        raise InvalidInput(f"engine env {key}: {value!r} holds characters labctl does not pass "
                           "(letters, digits and . _ : / , = @ + - only)")
    return key, value


def mirror(value: Any) -> str:
    """``--registry-mirror``: an http(s)://host[:port][/path] URL."""
    if not isinstance(value, str):
        raise InvalidInput(f"registry mirror {value!r} is not a URL")
    return _url(value.rstrip("/") if value.count("/") > 3 else value, "registry mirror")


def insecure_registry(value: Any) -> str:
    """``--insecure-registry``: HOST[:PORT] (or an IPv4 CIDR, as dockerd accepts)."""
    text = value if isinstance(value, str) else ""
    if "/" in text:
        try:
            return str(ipaddress.IPv4Network(text, strict=True))
        except ValueError:
            pass
    if not _REGISTRY.fullmatch(text) or len(text) > 255:
        raise InvalidInput(f"insecure registry {value!r} is not HOST[:PORT] (or a CIDR)",
                           "e.g. registry.lab.example:5000")
    port = text.rpartition("]")[2]
    if ":" in port and not 0 < int(port.rsplit(":", 1)[1]) < 65536:
        raise InvalidInput(f"insecure registry {value!r} has a port out of range")
    return text


# ---- the settings -------------------------------------------------------------------------------
def _key(entry: str) -> str:
    return entry.split("=", 1)[0]


@dataclass(frozen=True)
class Settings:
    """The engine's environment (``KEY=VALUE`` entries, in order), registry mirrors and
    insecure registries."""

    env: tuple[str, ...] = ()
    mirrors: tuple[str, ...] = ()
    insecure: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.env or self.mirrors or self.insecure)

    def env_dict(self) -> dict[str, str]:
        return dict(e.split("=", 1) for e in self.env if "=" in e)

    def same(self, other: Settings) -> bool:
        """The same for the engine: variables as a mapping, mirrors and registries in order."""
        return (self.env_dict() == other.env_dict() and list(self.mirrors) == list(other.mirrors)
                and list(self.insecure) == list(other.insecure))

    @classmethod
    def of_options(cls, options: Any) -> Settings:
        """From config.json's ``HostOptions.EngineOptions`` (null lists are empty)."""
        o = options if isinstance(options, dict) else {}
        return cls(tuple(str(e) for e in o.get("Env") or []),
                   tuple(str(e) for e in o.get("RegistryMirror") or []),
                   tuple(str(e) for e in o.get("InsecureRegistry") or []))

    @classmethod
    def of_config(cls, data: bytes) -> Settings:
        """From a machine's config.json (bytes)."""
        return _of_config(data)


def _of_config(data: bytes) -> Settings:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        from labctl.errors import MalformedFile

        raise MalformedFile(f"docker-machine's config.json is not valid JSON: {exc}") from None
    host = doc.get("HostOptions") if isinstance(doc, dict) else None
    return Settings.of_options(host.get("EngineOptions") if isinstance(host, dict) else None)


def wanted(engine_env: Iterable[str] = (), mirrors: Iterable[str] = (),
           insecure: Iterable[str] = ()) -> Settings:
    env: dict[str, str] = {}
    for e in engine_env:
        k, v = env_entry(e)
        env[k] = v
    return Settings(tuple(f"{k}={v}" for k, v in env.items()), tuple(dict.fromkeys(mirrors)),
                    tuple(dict.fromkeys(insecure)))


@dataclass(frozen=True)
class Owned:
    """What labctl set (its record): variable names, the entries they replaced, the mirrors
    and registries it added."""

    env_keys: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()  # the KEY=VALUE entries that were there before labctl's
    mirrors: tuple[str, ...] = ()
    insecure: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.env_keys or self.mirrors or self.insecure)

    def as_dict(self) -> dict[str, list[str]]:
        return {"env_keys": list(self.env_keys), "replaced": list(self.replaced),
                "mirrors": list(self.mirrors), "insecure": list(self.insecure)}

    @classmethod
    def from_record(cls, data: Any) -> Owned:
        d = data if isinstance(data, dict) else {}

        def strs(key: str) -> tuple[str, ...]:
            v = d.get(key)
            return tuple(str(x) for x in v) if isinstance(v, list) else ()

        return cls(strs("env_keys"), strs("replaced"), strs("mirrors"), strs("insecure"))

    def union(self, other: Owned) -> Owned:
        replaced = {_key(e): e for e in other.replaced}
        replaced.update({_key(e): e for e in self.replaced})  # the first original wins
        return Owned(tuple(dict.fromkeys([*self.env_keys, *other.env_keys])), tuple(replaced.values()),
                     tuple(dict.fromkeys([*self.mirrors, *other.mirrors])),
                     tuple(dict.fromkeys([*self.insecure, *other.insecure])))


def base(current: Settings, owned: Owned) -> Settings:
    """``current`` without what labctl set: its variables go (the values they replaced come
    back in their place), its mirrors and registries go."""
    originals = {_key(e): e for e in owned.replaced}
    env: list[str] = []
    for e in current.env:
        k = _key(e)
        if k not in owned.env_keys:
            env.append(e)
        elif k in originals and originals[k] not in env:
            env.append(originals[k])
    return Settings(tuple(env), tuple(m for m in current.mirrors if m not in owned.mirrors),
                    tuple(i for i in current.insecure if i not in owned.insecure))


def covered(entries: Sequence[str], item: str) -> bool:
    """Whether a NO_PROXY list already leaves ``item`` (a CIDR or an address) out: ``*``, the
    same entry, or (for a subnet) a CIDR holding it."""
    if "*" in entries or item in entries:
        return True
    if "/" not in item:
        return False
    net = ipaddress.IPv4Network(item)
    for e in entries:
        try:
            if net.subnet_of(ipaddress.IPv4Network(e, strict=False)):
                return True
        except ValueError:
            continue
    return False


def target(start: Settings, want: Settings, lab: Sequence[str]) -> tuple[Settings, list[str]]:
    """The settings labctl makes: ``start`` (what is there without labctl's) with ``want``'s
    variables set and mirrors/registries added; when a proxy is set, NO_PROXY and no_proxy
    with every ``lab`` entry (subnets, the fixed IP) appended that they do not cover.
    Returns (settings, what was appended to NO_PROXY)."""
    env = start.env_dict()
    order = [_key(e) for e in start.env]
    for e in want.env:
        k, v = e.split("=", 1)
        if k not in env:
            order.append(k)
        env[k] = v
    appended: list[str] = []
    if any(env.get(k) for k in PROXY_KEYS):
        for k in NO_PROXY_KEYS:
            other = NO_PROXY_KEYS[1 - NO_PROXY_KEYS.index(k)]
            value = env.get(k) if env.get(k) is not None else env.get(other, "")
            entries = [x.strip() for x in (value or "").split(",") if x.strip()]
            missing = [item for item in lab if not covered(entries, item)]
            for item in missing:
                if item not in appended:
                    appended.append(item)
            if k not in env:
                order.append(k)
            env[k] = ",".join([*entries, *missing])
    mirrors = [*start.mirrors, *(m for m in want.mirrors if m not in start.mirrors)]
    insecure = [*start.insecure, *(i for i in want.insecure if i not in start.insecure)]
    return Settings(tuple(f"{k}={env[k]}" for k in dict.fromkeys(order)), tuple(mirrors),
                    tuple(insecure)), appended


def owned(start: Settings, result: Settings) -> Owned:
    """What labctl owns once ``result`` replaced ``start``."""
    before = start.env_dict()
    after = result.env_dict()
    keys = [k for k in after if before.get(k) != after[k]]
    return Owned(tuple(keys), tuple(f"{k}={before[k]}" for k in keys if k in before),
                 tuple(m for m in result.mirrors if m not in start.mirrors),
                 tuple(i for i in result.insecure if i not in start.insecure))


def create_flags(s: Settings) -> list[str]:
    """docker-machine create's flags for ``s`` (names as docker-machine 0.16.2's help says)."""
    out: list[str] = []
    for e in s.env:
        out += ["--engine-env", e]
    for m in s.mirrors:
        out += ["--engine-registry-mirror", m]
    for i in s.insecure:
        out += ["--engine-insecure-registry", i]
    return out


def describe(s: Settings) -> str:
    env = s.env_dict()
    same = env.get("NO_PROXY") is not None and env.get("NO_PROXY") == env.get("no_proxy")
    parts = [f"{k}{' (and no_proxy)' if same and k == 'NO_PROXY' else ''}={v}" for k, v in env.items()
             if not (same and k == "no_proxy")]
    parts += [*(f"mirror {m}" for m in s.mirrors), *(f"insecure registry {i}" for i in s.insecure)]
    # a proxy password is not repeated in sentences (the exact commands still carry it)
    return _CREDENTIALS.sub(r"\1***@", ", ".join(parts)) or "no proxies, mirrors or insecure registries"


# ---- docker-machine's record (config.json) ---------------------------------------------------------
def config_with(data: bytes, s: Settings) -> bytes:
    """config.json with ``HostOptions.EngineOptions`` Env/RegistryMirror/InsecureRegistry set to
    ``s``; everything else as it was (docker-machine writes it indented by four spaces)."""
    doc = json.loads(data)
    options = doc.setdefault("HostOptions", {}).setdefault("EngineOptions", {})
    if Settings.of_options(options) == s:
        return data
    options["Env"] = list(s.env)
    options["RegistryMirror"] = list(s.mirrors)
    options["InsecureRegistry"] = list(s.insecure)
    return json.dumps(doc, indent=4).encode()


# ---- the VM: one read-only probe -------------------------------------------------------------------
def probe_script() -> str:
    """One shell command: the host's kind, the profile, docker-machine's drop-in and labctl's.
    Each section starts with a newline and the marker, so a file's bytes come back exactly."""
    def sec(name: str, cmd: str) -> str:
        return f"printf '\\n{SEP} {name}\\n'; {cmd}"

    def file(path: str) -> str:
        return f"if [ -e {path} ]; then echo present; sudo cat {path}; fi"

    return "; ".join([
        sec("os", "cat /etc/os-release 2>/dev/null"),
        sec("b2d", "if [ -d /var/lib/boot2docker ]; then echo yes; fi"),
        sec("profile", file(PROFILE)), sec("machine", file(MACHINE_DROPIN)), sec("dropin", file(DROPIN)),
        sec("end", "true")])


@dataclass
class EngineFacts:
    """What the VM's engine is started with (labctl's probe)."""

    os_id: str = ""
    boot2docker: bool = False
    profile: str | None = None
    machine_conf: str | None = None
    dropin: str | None = None
    complete: bool = False

    @property
    def init(self) -> str:
        return "boot2docker" if self.boot2docker or self.os_id == "boot2docker" else "systemd"

    def settings(self) -> Settings:
        """What the engine gets when it (re)starts."""
        if self.init == "boot2docker":
            return profile_settings(self.profile or "")
        env, mirrors, insecure = machine_conf_settings(self.machine_conf or "")
        merged = dict(e.split("=", 1) for e in env)
        merged.update(dict(e.split("=", 1) for e in unit_env(self.dropin or "")))
        return Settings(tuple(f"{k}={v}" for k, v in merged.items() if v), tuple(mirrors), tuple(insecure))


def parse_probe(text: str) -> EngineFacts:
    f = EngineFacts()
    for piece in text.split(f"\n{SEP} ")[1:]:
        name, _, body = piece.partition("\n")
        name = name.strip()
        if name == "os":
            for line in body.splitlines():
                key, _, value = line.partition("=")
                if key == "ID":
                    f.os_id = value.strip().strip('"')
        elif name == "b2d":
            f.boot2docker = body.strip() == "yes"
        elif name in ("profile", "machine", "dropin") and body.startswith("present\n"):
            setattr(f, {"profile": "profile", "machine": "machine_conf", "dropin": "dropin"}[name],
                    body[len("present\n"):])
        elif name == "end":
            f.complete = True
    return f


# ---- boot2docker's profile ---------------------------------------------------------------------------
_EXPORT = re.compile(r'^export "([A-Za-z_][A-Za-z0-9_]*)=(.*)"\s*$')
_ARG = re.compile(r"^--(insecure-registry|registry-mirror)[ =](\S+)\s*$")


def _unquote(text: str) -> str:
    return re.sub(r'\\(.)', r"\1", text)


def _extra_args(lines: list[str]) -> tuple[int, int] | None:
    """(index of ``EXTRA_ARGS='``, index of the closing ``'``) of docker-machine's block."""
    for i, line in enumerate(lines):
        if line.rstrip("\n") == "EXTRA_ARGS='":
            for j in range(i + 1, len(lines)):
                if lines[j].rstrip("\n") == "'":
                    return i, j
            return None
    return None


def profile_settings(text: str) -> Settings:
    lines = text.splitlines(keepends=True)
    env = [f"{m.group(1)}={_unquote(m.group(2))}" for m in map(_EXPORT.match, lines) if m]
    mirrors: list[str] = []
    insecure: list[str] = []
    block = _extra_args(lines)
    if block is not None:
        for line in lines[block[0] + 1:block[1]]:
            m = _ARG.match(line)
            if m:
                (mirrors if m.group(1) == "registry-mirror" else insecure).append(m.group(2))
    return Settings(tuple(env), tuple(mirrors), tuple(insecure))


def render_profile(text: str | None, s: Settings) -> str:
    """The profile with docker-machine's lines for ``s`` in place of the old ones (its
    template: insecure registries then mirrors after the labels in EXTRA_ARGS; one
    ``export "KEY=VALUE"`` line per variable); every other line as it was."""
    lines = (text if text is not None else "\nEXTRA_ARGS='\n'\n").splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    block = _extra_args(lines)
    if block is None:
        lines += ["EXTRA_ARGS='\n", "'\n"]
        block = (len(lines) - 2, len(lines) - 1)
    start, end = block
    inner = [line for line in lines[start + 1:end] if not _ARG.match(line)]
    at = max((i + 1 for i, line in enumerate(inner) if line.startswith("--label ")), default=0)
    args = [f"--insecure-registry {i}\n" for i in s.insecure]
    args += [f"--registry-mirror {m}\n" for m in s.mirrors]
    lines = [*lines[:start + 1], *inner[:at], *args, *inner[at:], *lines[end:]]
    exports = [f'export "{e}"\n' for e in s.env]
    first = next((i for i, line in enumerate(lines) if _EXPORT.match(line)), None)
    kept = [line for line in lines if not _EXPORT.match(line)]
    if first is None:
        cert = max((i for i, line in enumerate(kept) if line.startswith("SERVERCERT=")), default=None)
        first = len(kept)
        if cert is not None and cert + 1 < len(kept) and not kept[cert + 1].strip():
            first = cert + 2
    return "".join([*kept[:first], *exports, *kept[first:]])


# ---- systemd hosts ---------------------------------------------------------------------------------
def unit_env(text: str) -> list[str]:
    """The ``Environment=`` entries of a unit file, in order."""
    out: list[str] = []
    for line in text.splitlines():
        if line.startswith("Environment="):
            try:
                words = shlex.split(line[len("Environment="):])
            except ValueError:
                continue
            out += [w for w in words if "=" in w]
    return out


def machine_conf_settings(text: str) -> tuple[list[str], list[str], list[str]]:
    """docker-machine's drop-in: (Environment entries, --registry-mirror, --insecure-registry)."""
    mirrors: list[str] = []
    insecure: list[str] = []
    for line in text.splitlines():
        if line.startswith("ExecStart=") and len(line) > len("ExecStart="):
            words = line.split()
            for i, w in enumerate(words[:-1]):
                if w == "--registry-mirror":
                    mirrors.append(words[i + 1])
                elif w == "--insecure-registry":
                    insecure.append(words[i + 1])
    return unit_env(text), mirrors, insecure


def dropin_text(name: str, entries: Sequence[str]) -> str | None:
    """labctl's drop-in with these Environment entries (None: no file)."""
    if not entries:
        return None
    from labctl.validate import systemd_assignment

    lines = [f"Environment={systemd_assignment(*e.split('=', 1))}\n" for e in entries]
    return (f"{DROPIN_HEAD}{name}; labctl down removes it\n"
            "# the engine's proxies and other environment (labctl up --engine-env)\n"
            "[Service]\n" + "".join(lines))


def machine_conf_for(s: Settings) -> str:
    """A stand-in of docker-machine's drop-in as ``create`` writes it for ``s`` (a plan's
    projection of a VM not provisioned yet)."""
    args = [*(f"--insecure-registry {i}" for i in s.insecure), *(f"--registry-mirror {m}" for m in s.mirrors)]
    env = " ".join(f'"{e}"' for e in s.env)
    return f"[Service]\nExecStart=\nExecStart=/usr/bin/dockerd {' '.join(args)} \nEnvironment={env}\n"


def projected(s: Settings, init: str) -> EngineFacts:
    """The facts of a VM docker-machine is about to provision with ``s``."""
    if init == "boot2docker":
        return EngineFacts(os_id="boot2docker", boot2docker=True, profile=render_profile(None, s),
                           complete=True)
    return EngineFacts(os_id="debian", machine_conf=machine_conf_for(s), complete=True)


# ---- the planned change in the VM --------------------------------------------------------------------
@dataclass
class VmEdit:
    """One command line in the VM: write the file, restart the engine (shown exactly)."""

    description: str
    command: str
    vm_path: str
    vm_old: str | None
    vm_new: str | None
    notes: list[str] = field(default_factory=list)


class Unsupported(Exception):
    pass


def plan_vm(name: str, facts: EngineFacts, s: Settings, what: str) -> VmEdit | None:
    """Pure: the one command that gives the VM's engine ``s`` (file edit, then a restart);
    None when it already has it.  ``what`` says it in the description."""
    if facts.settings().same(s):
        return None
    if facts.init == "boot2docker":
        new = render_profile(facts.profile, s)
        script = [replace_cmd(PROFILE, new), B2D_RESTART]
        return VmEdit(f"{what} in {name}'s {PROFILE} and restart its engine (containers without a "
                      "restart policy stop)", f"sudo sh -c {shlex.quote(' && '.join(script))}",
                      PROFILE, facts.profile, new)
    env, mirrors, insecure = machine_conf_settings(facts.machine_conf or "")
    if list(mirrors) != list(s.mirrors) or list(insecure) != list(s.insecure):
        raise Unsupported(name)
    given = dict(e.split("=", 1) for e in env)
    # labctl's drop-in sets what docker-machine's does not (or differently); a variable only
    # docker-machine's sets is docker-machine's business and stays
    mine = [e for e in s.env if given.get(_key(e)) != e.split("=", 1)[1]]
    new_dropin = dropin_text(name, mine)
    if new_dropin == facts.dropin:
        return None
    script = [replace_cmd(DROPIN, new_dropin), SYSTEMD_RESTART]
    return VmEdit(f"{what} in {name}'s {DROPIN} and restart its engine (containers without a "
                  "restart policy stop)", f"sudo sh -c {shlex.quote(' && '.join(script))}",
                  DROPIN, facts.dropin, new_dropin)

"""The docker-machine adapter: the one place labctl runs ``docker-machine``.

Every call goes through the Runner (argv lists, timeouts).  docker-machine's real failures
(texts recorded from 0.16.2 in ``../shared/fixtures/docker-machine/``) become typed labctl
errors with a remedy; :func:`classify` does that from (stdout, stderr) alone so it is tested
on the recorded texts.  Reads that need no subprocess (does a machine exist, its config.json,
its .vmx path) read the machine store directly, as docker-machine itself does.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.errors import (
    CommandFailed,
    Conflict,
    InvalidInput,
    LabctlError,
    MalformedFile,
    PreconditionMissing,
)
from labctl.paths import Paths
from labctl.runner import Result, Runner

#: drivers labctl knows how to size; anything else is passed through with ``extra`` flags.
FUSION = "vmwarefusion"
VMWARE = "vmware"
NONE = "none"
DRIVERS = (FUSION, VMWARE)

#: create-flag names per driver (cpu, memory MB, disk MB, boot2docker ISO URL)
DRIVER_FLAGS: dict[str, dict[str, str]] = {
    FUSION: {
        "cpus": "--vmwarefusion-cpu-count",
        "memory": "--vmwarefusion-memory-size",
        "disk": "--vmwarefusion-disk-size",
        "iso": "--vmwarefusion-boot2docker-url",
    },
    VMWARE: {
        "cpus": "--vmware-cpu-count",
        "memory": "--vmware-memory-size",
        "disk": "--vmware-disk-size",
        "iso": "--vmware-boot2docker-url",
        # the plugin only: nat (default) | bridged | hostonly
        "network": "--vmware-network-type",
    },
}
PLUGIN_BINARY = "docker-machine-driver-vmware"

TIMEOUT_SHORT = 60.0
TIMEOUT_CREATE = 900.0
TIMEOUT_START = 300.0
ENGINE_PORT = 2376


# ---- errors ------------------------------------------------------------------------------------
class MachineError(CommandFailed):
    """docker-machine failed in a way labctl has no better name for."""


class MachineNotFound(InvalidInput):
    """No machine of that name in the store."""


class MachineExists(Conflict):
    """create: a machine of that name is already in the store."""


class DriverUnsupported(PreconditionMissing):
    """The driver does not exist on this platform (vmwarefusion off macOS)."""


class DriverMissing(PreconditionMissing):
    """The driver plugin binary is not on PATH."""


class MachineNotRunning(MachineError):
    """The machine is stopped (or in error), so it has no IP, URL or SSH."""


class TlsCheckFailed(MachineError):
    """docker-machine could not validate the engine's TLS certificates."""


class NoActiveHost(MachineError):
    """``docker-machine active``: DOCKER_HOST points at no machine."""


_NOT_FOUND = [
    re.compile(r'Docker machine "(?P<name>[^"]*)" does not exist'),
    re.compile(r'Host does not exist: "(?P<name>[^"]*)"'),  # older docker-machine releases
]
_UNSUPPORTED = re.compile(r'Driver "(?P<driver>[^"]+)" not supported on this platform')
_PLUGIN_MISSING = re.compile(r'Driver "(?P<driver>[^"]+)" not found\. Do you have the plugin binary')
_EXISTS = re.compile(r'(?:Docker machine|Host already exists:) "(?P<name>[^"]*)"(?: already exists)?')
_ALREADY = re.compile(r'Machine "(?P<name>[^"]*)" is already (?P<state>\w+)\.')
_TLS = re.compile(r"Error checking (?:TLS connection|and/or regenerating the certs)|"
                  r"error validating certificates")
_NOT_RUNNING = re.compile(r"Host is not running|IP address is not set|is not running")


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def classify(argv: Sequence[str], result: Result | None = None, *, stdout: str = "",
             stderr: str = "", returncode: int = 1, name: str | None = None) -> LabctlError:
    """Turn a failed docker-machine run into a typed error with a remedy."""
    if result is not None:
        stdout, stderr, returncode = result.stdout, result.stderr, result.returncode
    argv = [str(a) for a in argv]
    err = stderr.strip() or stdout.strip()
    line = _first_line(stderr) or _first_line(stdout) or f"exit status {returncode}"
    cmd = shlex.join(["docker-machine", *argv[1:]]) if argv else "docker-machine"
    kw: dict[str, Any] = {"argv": argv, "returncode": returncode, "stdout": stdout, "stderr": stderr}

    for pat in _NOT_FOUND:
        m = pat.search(err)
        if m:
            missing = m.group("name")
            return MachineNotFound(
                f'docker-machine has no machine named "{missing}"',
                f"list machines with: docker-machine ls; create it with: labctl up {missing}")
    m = _UNSUPPORTED.search(err)
    if m:
        drv = m.group("driver")
        remedy = (f"the {drv} driver exists only in docker-machine for macOS; on Linux use "
                  f"--driver vmware (install {PLUGIN_BINARY} on PATH)") if drv == FUSION else \
            f"pick another driver with --driver (e.g. {VMWARE})"
        return DriverUnsupported(f'docker-machine driver "{drv}" is not supported on this platform',
                                 remedy)
    m = _PLUGIN_MISSING.search(err)
    if m:
        drv = m.group("driver")
        return DriverMissing(f'docker-machine driver "{drv}" is not installed',
                             f"put docker-machine-driver-{drv} on PATH "
                             "(https://github.com/machine-drivers/docker-machine-driver-vmware/releases)")
    m = _ALREADY.search(err)
    if m:
        return Conflict(f'machine "{m.group("name")}" is already {m.group("state")}')
    if "already exists" in err:
        m = _EXISTS.search(err)
        existing = m.group("name") if m else (name or "?")
        return MachineExists(f'a docker-machine named "{existing}" already exists',
                             f"use it (labctl up {existing}) or remove it: docker-machine rm -y {existing}")
    if _NOT_RUNNING.search(err):
        target = name or "NAME"
        return MachineNotRunning(f"machine {target} is not running: {line}",
                                 f"start it: docker-machine start {target}", **kw)
    if _TLS.search(err):
        target = name or (argv[-1] if argv else "NAME")
        return TlsCheckFailed(
            f"docker-machine could not check the engine's TLS certificates: {line}",
            f"if the machine's IP changed, run: docker-machine regenerate-certs -f {target} "
            "(this restarts the Docker daemon in the VM)", **kw)
    if "No active host found" in err:
        return NoActiveHost("no active docker-machine (DOCKER_HOST points at none)",
                            "eval $(docker-machine env NAME)", **kw)
    if "No machine name specified" in err:
        return InvalidInput("docker-machine needs a machine name")
    if "--url option is required" in err:
        return InvalidInput("the none driver needs --url tcp://HOST:PORT")
    return MachineError(f"{cmd} failed: {line}",
                        "run it by hand to see the whole output, or rerun labctl with --debug", **kw)


# ---- data ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MachineConfig:
    """``docker-machine config NAME``: what a docker client needs."""

    host: str  # tcp://IP:2376
    tlscacert: str
    tlscert: str
    tlskey: str
    tlsverify: bool = True

    @property
    def cert_dir(self) -> str:
        return str(Path(self.tlscacert).parent)

    def context_docker_arg(self) -> str:
        """The ``--docker`` value for ``docker context create``."""
        return f"host={self.host},ca={self.tlscacert},cert={self.tlscert},key={self.tlskey}"


@dataclass(frozen=True)
class MachineDetails:
    """The useful part of ``inspect`` / config.json."""

    name: str
    driver: str
    store_path: str  # the machine store root (Driver.StorePath)
    url: str  # Driver.URL when the driver stores one (the none driver), else ""
    machine_dir: str  # AuthOptions.StorePath
    ip_address: str
    ssh_user: str
    ssh_port: int
    ssh_key_path: str
    ca_cert: str
    ca_key: str
    client_cert: str
    client_key: str
    server_cert: str
    server_key: str
    engine_flags: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MachineDetails:
        drv = data.get("Driver") or {}
        host = data.get("HostOptions") or {}
        auth = host.get("AuthOptions") or {}
        engine = host.get("EngineOptions") or {}
        return cls(
            name=str(data.get("Name") or drv.get("MachineName") or ""),
            driver=str(data.get("DriverName") or ""),
            store_path=str(drv.get("StorePath") or ""),
            url=str(drv.get("URL") or ""),
            machine_dir=str(auth.get("StorePath") or ""),
            ip_address=strip_port(str(drv.get("IPAddress") or "")),
            ssh_user=str(drv.get("SSHUser") or ""),
            ssh_port=int(drv.get("SSHPort") or 0),
            ssh_key_path=str(drv.get("SSHKeyPath") or ""),
            ca_cert=str(auth.get("CaCertPath") or ""),
            ca_key=str(auth.get("CaPrivateKeyPath") or ""),
            client_cert=str(auth.get("ClientCertPath") or ""),
            client_key=str(auth.get("ClientKeyPath") or ""),
            server_cert=str(auth.get("ServerCertPath") or ""),
            server_key=str(auth.get("ServerKeyPath") or ""),
            engine_flags=[str(f) for f in (engine.get("ArbitraryFlags") or [])],
            raw=data,
        )


@dataclass(frozen=True)
class MachineListing:
    name: str
    driver: str
    state: str
    url: str
    error: str


def strip_port(value: str) -> str:
    """``192.168.99.10:2376`` -> ``192.168.99.10`` (the none driver prints host:port)."""
    value = value.strip()
    if value.startswith("[") and "]" in value:  # [v6]:port
        return value[1:value.index("]")]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def check_name(name: str) -> str:
    from labctl import validate

    return validate.machine_name(name)


RELEASES = "https://github.com/docker/machine/releases/download/v0.16.2"
#: docker-machine 0.16.2's release assets: Darwin-x86_64 is the only macOS build (Apple
#: Silicon runs it under Rosetta 2); Linux has x86_64, aarch64 and armhf.
ASSETS = {("darwin", "x86_64"): "Darwin-x86_64", ("linux", "x86_64"): "Linux-x86_64",
          ("linux", "aarch64"): "Linux-aarch64", ("linux", "armhf"): "Linux-armhf"}


def install_hint(platform: str, arch: str | None = None) -> str:
    """The command that installs docker-machine 0.16.2 here (an asset that exists)."""
    from labctl.hostinfo import is_arm, machine_arch

    arch = (arch or machine_arch()).lower()
    cpu = "aarch64" if is_arm(arch) else "armhf" if arch.startswith("arm") else "x86_64"
    if platform == "darwin":
        cpu = "x86_64"
    asset = ASSETS[(platform if platform == "darwin" else "linux", cpu)]
    cmd = (f"curl -fL {RELEASES}/docker-machine-{asset} -o /tmp/docker-machine && "
           "sudo install /tmp/docker-machine /usr/local/bin/docker-machine")
    if platform == "darwin" and is_arm(arch):
        cmd = ("softwareupdate --install-rosetta --agree-to-license && " + cmd +
               " (there is no Apple Silicon build: the Intel one runs under Rosetta 2)")
    return cmd


def default_driver(platform: str) -> str:
    """vmwarefusion (built in) on macOS, the vmware plugin on Linux."""
    return FUSION if platform == "darwin" else VMWARE


def storage_path(env: dict[str, str] | None = None) -> Path:
    """``MACHINE_STORAGE_PATH`` or ``~/.docker/machine`` (docker-machine's own rule)."""
    env = dict(os.environ) if env is None else env
    value = env.get("MACHINE_STORAGE_PATH")
    if value:
        return Path(value)
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".docker" / "machine"


def create_argv(name: str, driver: str, *, cpus: int | None = None, memory: int | None = None,
                disk: int | None = None, engine_opts: Sequence[str] = (),
                extra: Sequence[str] = (), boot2docker_url: str | None = None,
                network_type: str | None = None) -> list[str]:
    """The argv (after the binary) of ``docker-machine create``; pure, for plans and dry runs."""
    check_name(name)
    args = ["create", "--driver", driver]
    flags = DRIVER_FLAGS.get(driver)
    sized = {"cpus": cpus, "memory": memory, "disk": disk}
    if flags is None:
        if any(v is not None for v in sized.values()) or boot2docker_url or network_type:
            raise InvalidInput(f"labctl cannot size a {driver!r} machine",
                               f"use --driver {FUSION} or {VMWARE}, or pass driver flags yourself")
    else:
        for key, value in sized.items():
            if value is not None:
                if int(value) <= 0:
                    raise InvalidInput(f"{key} must be a positive number, not {value}")
                args += [flags[key], str(int(value))]
        if boot2docker_url:
            args += [flags["iso"], boot2docker_url]
        if network_type:
            if "network" not in flags:
                raise InvalidInput(f"the {driver} driver has no network-type option",
                                   f"use --driver {VMWARE} for --vmware-network-type")
            if network_type not in ("nat", "bridged", "hostonly"):
                raise InvalidInput(f"network type must be nat, bridged or hostonly, not {network_type!r}")
            args += [flags["network"], network_type]
    for opt in engine_opts:
        if "=" not in opt or "\n" in opt:
            raise InvalidInput(f"engine option {opt!r} must look like flag=value")
        args += ["--engine-opt", opt]
    args += [str(a) for a in extra]
    args.append(name)
    return args


# ---- the adapter -----------------------------------------------------------------------------
@dataclass
class DockerMachine:
    """``docker-machine`` through the Runner.  Build one with :meth:`detect`."""

    runner: Runner
    binary: str = "docker-machine"
    store: Path = field(default_factory=storage_path)
    platform: str = "linux"

    @classmethod
    def detect(cls, runner: Runner, paths: Paths | None = None) -> DockerMachine:
        paths = paths or Paths.detect()
        return cls(runner=runner, binary=str(paths.docker_machine), store=storage_path(),
                   platform=paths.platform)

    # -- store (no subprocess) --
    def machine_dir(self, name: str) -> Path:
        return self.store / "machines" / check_name(name)

    def vmx_path(self, name: str) -> Path:
        """``<store>/machines/<name>/<name>.vmx`` (both VMware drivers)."""
        return self.machine_dir(name) / f"{name}.vmx"

    def exists(self, name: str) -> bool:
        return (self.machine_dir(name) / "config.json").is_file()

    def read_config(self, name: str) -> MachineDetails:
        """config.json straight from the store (what ``inspect`` prints), no subprocess."""
        return read_config(self.machine_dir(name) / "config.json", name)

    # -- running docker-machine --
    def _env(self) -> dict[str, str]:
        return {"MACHINE_STORAGE_PATH": str(self.store)}

    def run(self, *args: str, timeout: float = TIMEOUT_SHORT, name: str | None = None,
            env: dict[str, str] | None = None) -> Result:
        argv = [self.binary, *args]
        try:
            result = self.runner.run(argv, timeout=timeout, check=False,
                                     env={**self._env(), **(env or {})})
        except PreconditionMissing as exc:
            raise PreconditionMissing(
                f"docker-machine is not installed ({self.binary} not found)",
                install_hint(self.platform)) from exc
        if not result.ok:
            raise classify(argv, result, name=name)
        return result

    def require(self) -> None:
        """PreconditionMissing (with the install command) unless docker-machine is installed;
        looked up as the Runner would run it, without running it."""
        binary = Path(self.binary)
        found = (binary.is_file() and os.access(binary, os.X_OK)) if binary.is_absolute() \
            else shutil.which(self.binary) is not None
        if not found:
            raise PreconditionMissing(f"docker-machine is not installed ({self.binary} not found)",
                                      install_hint(self.platform))

    def version(self) -> str:
        """``0.16.2`` from ``docker-machine version 0.16.2, build bd45ab13``."""
        out = self.run("--version").stdout
        m = re.search(r"version\s+v?([0-9][^\s,]*)", out)
        if not m:
            raise MachineError(f"cannot read the docker-machine version from {out.strip()!r}")
        return m.group(1)

    def ls(self, timeout: int = 5) -> list[MachineListing]:
        fmt = r"{{.Name}}\t{{.DriverName}}\t{{.State}}\t{{.URL}}\t{{.Error}}"
        out = self.run("ls", "--timeout", str(timeout), "--format", fmt,
                       timeout=TIMEOUT_SHORT + timeout).stdout
        rows = []
        for line in out.splitlines():
            if not line.strip():
                continue
            parts = (line.split("\t") + [""] * 5)[:5]
            rows.append(MachineListing(*parts))
        return rows

    def names(self) -> list[str]:
        """Machine names from the store (what ``ls -q`` lists), no subprocess."""
        d = self.store / "machines"
        if not d.is_dir():
            return []
        return sorted(p.name for p in d.iterdir() if (p / "config.json").is_file())

    def status(self, name: str) -> str:
        """Running, Stopped, Error, Paused, Saved, Starting, Stopping, Timeout or None."""
        return self.run("status", check_name(name), name=name).stdout.strip()

    def ip(self, name: str) -> str:
        return strip_port(self.run("ip", check_name(name), name=name).stdout.strip())

    def url(self, name: str) -> str:
        url = self.run("url", check_name(name), name=name).stdout.strip()
        if not url:
            raise MachineNotRunning(f"machine {name} has no URL (is it running?)",
                                    f"start it: docker-machine start {name}")
        return url

    def inspect(self, name: str) -> dict[str, Any]:
        out = self.run("inspect", check_name(name), name=name).stdout
        try:
            data = json.loads(out)
        except ValueError as exc:
            raise MachineError(f"docker-machine inspect {name} printed no JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise MachineError(f"docker-machine inspect {name} printed no JSON object")
        return data

    def details(self, name: str) -> MachineDetails:
        return MachineDetails.from_dict(self.inspect(name))

    def config(self, name: str) -> MachineConfig:
        out = self.run("config", check_name(name), name=name, timeout=TIMEOUT_SHORT).stdout
        return parse_config(out)

    def env(self, name: str) -> dict[str, str]:
        out = self.run("env", "--shell", "bash", check_name(name), name=name).stdout
        return parse_env(out)

    def regenerate_certs(self, name: str, force: bool = True) -> Result:
        args = ["regenerate-certs"] + (["--force"] if force else []) + [check_name(name)]
        return self.run(*args, name=name, timeout=TIMEOUT_START)

    def ssh(self, name: str, command: Sequence[str] | str, timeout: float = TIMEOUT_SHORT) -> Result:
        """Run a command in the machine; a list is joined with shell quoting (the guest's
        shell runs it), a string is passed as is."""
        cmd = command if isinstance(command, str) else shlex.join([str(c) for c in command])
        return self.run("ssh", check_name(name), cmd, name=name, timeout=timeout)

    def create(self, name: str, driver: str | None = None, cpus: int | None = None,
               memory: int | None = None, disk: int | None = None,
               engine_opts: Sequence[str] = (), extra: Sequence[str] = (), *,
               boot2docker_url: str | None = None, network_type: str | None = None,
               timeout: float = TIMEOUT_CREATE) -> Result:
        driver = driver or default_driver(self.platform)
        self.preflight_driver(driver)
        args = create_argv(name, driver, cpus=cpus, memory=memory, disk=disk,
                           engine_opts=engine_opts, extra=extra, boot2docker_url=boot2docker_url,
                           network_type=network_type)
        return self.run(*args, name=name, timeout=timeout)

    def preflight_driver(self, driver: str) -> None:
        """Refuse early what docker-machine would refuse after seconds (or half-way)."""
        if driver == FUSION and self.platform != "darwin":
            raise DriverUnsupported(
                f'docker-machine driver "{FUSION}" is not supported on this platform',
                f"on Linux use --driver {VMWARE} (install {PLUGIN_BINARY} on PATH)")

    def driver_problem(self, driver: str) -> str | None:
        """Why ``driver`` cannot work here (for doctor and preflight), or None.  The plugin is
        looked up as docker-machine does (PATH), and beside the docker-machine binary."""
        if driver == FUSION:
            if self.platform != "darwin":
                return f'the "{FUSION}" driver exists only in docker-machine for macOS'
            return None
        if driver == VMWARE:
            beside = Path(self.binary).parent / PLUGIN_BINARY
            if shutil.which(PLUGIN_BINARY) or (beside.is_file() and os.access(beside, os.X_OK)):
                return None
            return (f"{PLUGIN_BINARY} is not on PATH (get it from "
                    "https://github.com/machine-drivers/docker-machine-driver-vmware/releases)")
        return None

    def start(self, name: str) -> bool:
        """Start; False if it was already running (not an error)."""
        return self._power("start", name, "already running")

    def stop(self, name: str) -> bool:
        """Stop; False if it was already stopped (not an error)."""
        return self._power("stop", name, "already stopped")

    def _power(self, verb: str, name: str, already: str) -> bool:
        """``docker-machine start|stop``; False when docker-machine refuses because the machine
        is ``already`` so (a Conflict that says it), any other error is raised."""
        try:
            self.run(verb, check_name(name), name=name, timeout=TIMEOUT_START)
        except Conflict as exc:
            if already in str(exc):
                return False
            raise
        return True

    def rm(self, name: str, force: bool = False, missing_ok: bool = False) -> bool:
        """Remove machine and VM; False if there was none and ``missing_ok``."""
        args = ["rm", "-y"] + (["-f"] if force else []) + [check_name(name)]
        try:
            self.run(*args, name=name, timeout=TIMEOUT_START)
        except MachineNotFound:
            if missing_ok:
                return False
            raise
        return True

    def active(self) -> str | None:
        try:
            return self.run("active").stdout.strip() or None
        except NoActiveHost:
            return None


def read_config(path: Path, name: str) -> MachineDetails:
    """A machine's config.json in docker-machine's store: the one reader of that file."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise MachineNotFound(f'docker-machine has no machine named "{name}"',
                              f"create it with: labctl up {name}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedFile(f"{path} is not valid JSON: {exc}") from exc
    except OSError as exc:
        raise MalformedFile(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not isinstance(data, dict):
        raise MalformedFile(f"{path} is not a JSON object")
    return MachineDetails.from_dict(data)


def parse_config(out: str) -> MachineConfig:
    """``--tlsverify`` / ``--tlscacert="…"`` / ``--tlscert`` / ``--tlskey`` / ``-H=tcp://…``."""
    values: dict[str, str] = {}
    verify = False
    for line in out.splitlines():
        line = line.strip()
        if line == "--tlsverify":
            verify = True
            continue
        m = re.match(r'^(--tlscacert|--tlscert|--tlskey|-H)=(?:"(.*)"|(.*))$', line)
        if m:
            values[m.group(1)] = m.group(2) if m.group(2) is not None else m.group(3)
    missing = [k for k in ("-H", "--tlscacert", "--tlscert", "--tlskey") if k not in values]
    if missing:
        raise MachineError(f"docker-machine config printed no {', '.join(missing)}")
    return MachineConfig(host=values["-H"], tlscacert=values["--tlscacert"],
                         tlscert=values["--tlscert"], tlskey=values["--tlskey"], tlsverify=verify)


def parse_env(out: str) -> dict[str, str]:
    """``export K="V"`` (bash) or ``set -gx K "V";`` (fish) lines -> dict."""
    env: dict[str, str] = {}
    for line in out.splitlines():
        m = re.match(r'^export (\w+)="(.*)"$', line) or re.match(r'^set -gx (\w+) "(.*)";$', line)
        if m:
            env[m.group(1)] = m.group(2)
    return env

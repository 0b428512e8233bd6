"""The Docker Engine adapter (docker SDK): where the engine is and how to reach it with
TLS verification on, which local networks and subnets it has, its version, and whether
routed traffic reaches unpublished ports (Engine >= 28 drops it unless a network's
``com.docker.network.bridge.gateway_mode_ipv4`` is ``nat-unprotected``).

The SDK is imported only inside functions: ``route ls --offline`` never loads it."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.errors import CommandFailed, Conflict, InvalidInput, PreconditionMissing
from labctl.paths import Paths
from labctl.runner import Runner

CONNECT_TIMEOUT = 10.0
GATEWAY_MODE_V4 = "com.docker.network.bridge.gateway_mode_ipv4"
UNPROTECTED = "nat-unprotected"
PREDEFINED = {"bridge", "host", "none"}


@dataclass(frozen=True)
class EngineTarget:
    """How to reach one engine: its URL and, for TCP, the TLS files (verification always on)."""

    url: str
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    machine: str = ""

    @property
    def host(self) -> str | None:
        m = re.match(r"^(?:tcp|https?)://\[?([^\]/:]+)\]?(?::\d+)?", self.url)
        return m.group(1) if m else None

    @property
    def tcp(self) -> bool:
        return not self.url.startswith(("unix://", "npipe://"))


def parse_machine_config(text: str, machine: str = "") -> EngineTarget:
    """``docker-machine config NAME`` output (parsed by labctl.machine) as an EngineTarget."""
    from labctl.machine import parse_config

    return _target(parse_config(text), machine)


def _target(cfg: Any, machine: str) -> EngineTarget:
    """A labctl.machine.MachineConfig as an EngineTarget."""
    return EngineTarget(cfg.host, Path(cfg.tlscacert), Path(cfg.tlscert), Path(cfg.tlskey), machine)


def target_from_store(machine: str, store: Path | None = None) -> EngineTarget:
    """The machine store directly (config.json + machines/NAME/{ca,cert,key}.pem), for when
    the docker-machine binary is not installed."""
    from labctl.machine import MachineNotFound, read_config, storage_path

    base = (store or storage_path()) / "machines" / machine
    try:
        cfg = read_config(base / "config.json", machine)
    except MachineNotFound as exc:
        raise PreconditionMissing(f"docker machine {machine!r} does not exist in {base.parent}",
                                  "docker-machine ls") from exc
    url = cfg.url or (f"tcp://{cfg.ip_address}:2376" if cfg.ip_address else "")
    if not url:
        raise PreconditionMissing(f"docker machine {machine!r} has no address yet",
                                  f"docker-machine start {machine}")
    return EngineTarget(url, base / "ca.pem", base / "cert.pem", base / "key.pem", machine)


def target_for_machine(paths: Paths, machine: str, runner: Runner | None = None) -> EngineTarget:
    """TLS material and URL from ``docker-machine config NAME`` (the machine store when
    docker-machine is not installed)."""
    from labctl.machine import DockerMachine

    dm = DockerMachine.detect(runner or Runner(), paths)
    try:
        cfg = dm.config(machine)
    except PreconditionMissing:
        if not Path(dm.binary).exists() and not shutil.which(dm.binary):
            return target_from_store(machine, dm.store)
        raise
    return _target(cfg, machine)


def machine_ip(paths: Paths, machine: str, runner: Runner | None = None) -> str:
    """``docker-machine ip NAME`` (the none driver prints host:port: the port is dropped)."""
    from labctl.machine import DockerMachine

    return DockerMachine.detect(runner or Runner(), paths).ip(machine)


def check_docker_host(url: str) -> str:
    if not re.match(r"^(tcp|unix)://\S+$", url or ""):
        raise InvalidInput(f"invalid Docker host {url!r}: expected tcp://IP:2376 or unix:///path")
    return url


def target_from_env(docker_host: str | None = None,
                    environ: dict[str, str] | None = None) -> EngineTarget:
    """``--docker-host URL`` / DOCKER_HOST, with DOCKER_CERT_PATH for TCP (TLS always verified)."""
    env = os.environ if environ is None else environ
    url = docker_host or env.get("DOCKER_HOST") or ""
    if not url:
        raise InvalidInput("no engine given: name a docker-machine, or pass --docker-host / set DOCKER_HOST")
    check_docker_host(url)
    if url.startswith("unix://"):
        return EngineTarget(url)
    cert_path = env.get("DOCKER_CERT_PATH") or str(Path(env.get("HOME", "~")).expanduser() / ".docker")
    base = Path(cert_path)
    files = [base / "ca.pem", base / "cert.pem", base / "key.pem"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise PreconditionMissing(f"TLS files for {url} are missing: {', '.join(missing)}",
                                  "set DOCKER_CERT_PATH to the directory with ca.pem, cert.pem and key.pem")
    return EngineTarget(url, files[0], files[1], files[2])


def resolve_target(paths: Paths, machine: str | None, docker_host: str | None,
                   runner: Runner | None = None) -> EngineTarget:
    if docker_host or (not machine and os.environ.get("DOCKER_HOST")):
        target = target_from_env(docker_host)
        return EngineTarget(target.url, target.ca, target.cert, target.key, machine or "")
    if machine:
        return target_for_machine(paths, machine, runner)
    raise InvalidInput("say which engine: labctl route … MACHINE, or --docker-host tcp://IP:2376")


# The API versions labctl's reads use (every field they read exists since 1.24); written out
# so that reading the engine does not import the SDK (about 0.2 s).  The SDK, which makes the
# changes, speaks this range too (a test checks it).
API_MIN = "1.24"
API_MAX = "1.44"


class EngineReader:
    """Read-only GETs on the Engine API with the standard library: what ``doctor``,
    ``route add/sync`` and ``up`` need on their hot path (version, networks, containers),
    without loading the SDK.  TLS is always verified against the engine's own CA (never the
    environment's bundles) with the client certificate, the server's address checked against
    its certificate; ``/version`` first, then every request at the newest API version both
    sides speak.  Errors are :class:`CommandFailed` with one line."""

    def __init__(self, target: EngineTarget, timeout: float = CONNECT_TIMEOUT) -> None:
        self.target = target
        self.timeout = timeout
        self._conn: Any = None
        self._lock = threading.Lock()  # one request at a time on the connection (doctor's threads)
        self.api_version = ""
        self._version: dict[str, Any] | None = None

    # -- transport ---------------------------------------------------------------------------
    def _connection(self) -> Any:
        import http.client
        import socket
        import ssl

        t = self.target
        if self._conn is not None:
            return self._conn
        if t.url.startswith("unix://"):
            path = t.url[len("unix://"):]
            timeout = self.timeout

            class UnixConnection(http.client.HTTPConnection):
                def connect(self) -> None:
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    sock.settimeout(timeout)
                    try:
                        sock.connect(path)
                    except OSError:
                        sock.close()
                        raise
                    self.sock = sock

            self._conn = UnixConnection("localhost", timeout=timeout)
            return self._conn
        if not (t.ca and t.cert and t.key):
            raise PreconditionMissing(f"no TLS files for {t.url}; labctl always verifies TLS")
        m = re.match(r"^(?:tcp|https?)://(\[[^\]]+\]|[^/:]+)(?::(\d+))?", t.url)
        if not m:
            raise InvalidInput(f"invalid Docker host {t.url!r}: expected tcp://IP:2376 or unix:///path")
        try:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(t.ca))
            ctx.load_cert_chain(str(t.cert), str(t.key))
        except (OSError, ValueError) as exc:
            raise CommandFailed(f"cannot use the TLS files for {t.url} ({t.ca}, {t.cert}, {t.key}): "
                                f"{_short(exc)}",
                                f"docker-machine regenerate-certs -f {t.machine or 'NAME'}") from exc
        self._conn = http.client.HTTPSConnection(m.group(1).strip("[]"), int(m.group(2) or 2376),
                                                 timeout=self.timeout, context=ctx)
        return self._conn

    def _get(self, path: str) -> Any:
        with self._lock:
            return self._get_locked(path)

    def _get_locked(self, path: str) -> Any:
        import json

        try:
            conn = self._connection()
            conn.request("GET", path, headers={"Host": "docker", "Accept": "application/json"})
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, ValueError) as exc:  # ssl.SSLError and TimeoutError are OSErrors
            self.close()
            raise CommandFailed(f"cannot reach the Docker Engine at {self.target.url}: {_short(exc)}",
                                "check the VM is running (docker-machine status) and its certificates"
                                ) from exc
        if resp.status != 200:
            try:
                message = str(json.loads(body).get("message", ""))
            except (ValueError, AttributeError):
                message = body[:200].decode(errors="replace")
            raise CommandFailed(f"the Docker Engine at {self.target.url} answered {resp.status} "
                                f"to GET {path}: {' '.join(message.split())}")
        try:
            return json.loads(body)
        except ValueError as exc:
            raise CommandFailed(f"the Docker Engine at {self.target.url} answered GET {path} "
                                "with something that is not JSON") from exc

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- reads -------------------------------------------------------------------------------
    def version(self) -> dict[str, Any]:
        """``/version`` (unversioned, as the SDK's version="auto" asks); fixes the API version."""
        if self._version is None:  # a race asks twice: harmless
            data = self._get("/version")
            if not isinstance(data, dict):
                raise CommandFailed(f"the Docker Engine at {self.target.url} sent a malformed /version")
            server = str(data.get("ApiVersion") or API_MIN)
            self.api_version = min(server, API_MAX, key=_api_tuple)
            self._version = data
        return self._version

    def get(self, path: str) -> Any:
        self.version()
        return self._get(f"/v{self.api_version}{path}")

    def networks(self) -> list[dict[str, Any]]:
        return list(self.get("/networks") or [])

    def containers(self) -> list[dict[str, Any]]:
        """Running containers: one request, no inspect per container."""
        return list(self.get("/containers/json") or [])


def read(target: EngineTarget, timeout: float = CONNECT_TIMEOUT) -> EngineReader:
    """An :class:`EngineReader` that has asked ``/version`` (so: the engine answers)."""
    reader = EngineReader(target, timeout)
    reader.version()
    return reader


def connect(target: EngineTarget, timeout: float = CONNECT_TIMEOUT) -> Any:
    """A DockerClient with verification on (TCP needs the CA, client cert and key).

    The engine's own CA must be the one checked: requests lets REQUESTS_CA_BUNDLE /
    CURL_CA_BUNDLE (often set system-wide) override a session's CA file, so the client does
    not trust the environment.  The SDK's own ``version="auto"`` asks the engine before that
    can be switched off, so labctl asks ``/version`` itself (with the oldest API version every
    engine accepts) and then opens the client at the newest version both sides speak."""
    from docker.constants import DEFAULT_DOCKER_API_VERSION, MINIMUM_DOCKER_API_VERSION
    from docker.errors import DockerException

    try:
        probe = _client(target, timeout, MINIMUM_DOCKER_API_VERSION)
        try:
            server = str(probe.api.version(api_version=False).get("ApiVersion",
                                                                  MINIMUM_DOCKER_API_VERSION))
        finally:
            probe.close()
        return _client(target, timeout, min(server, DEFAULT_DOCKER_API_VERSION, key=_api_tuple))
    except Exception as exc:  # DockerException, requests' ConnectionError / SSLError
        if not isinstance(exc, DockerException | OSError) and "requests" not in type(exc).__module__:
            raise
        raise CommandFailed(f"cannot reach the Docker Engine at {target.url}: {_short(exc)}",
                            "check the VM is running (docker-machine status) and its certificates"
                            ) from exc


def _client(target: EngineTarget, timeout: float, version: str) -> Any:
    """A DockerClient at a fixed API version (no request is made) that ignores the
    environment's CA bundles."""
    import docker

    kwargs: dict[str, Any] = {"base_url": target.url, "timeout": timeout, "version": version}
    if target.tcp:
        if not (target.ca and target.cert and target.key):
            raise PreconditionMissing(f"no TLS files for {target.url}; labctl always verifies TLS")
        kwargs["tls"] = docker.tls.TLSConfig(client_cert=(str(target.cert), str(target.key)),
                                            ca_cert=str(target.ca), verify=True)
    client = docker.DockerClient(**kwargs)
    client.api.trust_env = False  # a requests.Session attribute (public)
    return client


def _api_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version))


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    m = re.search(r"(Connection refused|timed out|No route to host|Network is unreachable|"
                  r"CERTIFICATE_VERIFY_FAILED[^)'\"]*|certificate verify failed[^)'\"]*)", text)
    return m.group(1) if m else text[:200]


@dataclass(frozen=True)
class EngineNetwork:
    id: str
    name: str
    driver: str
    scope: str
    subnets: tuple[ipaddress.IPv4Network, ...]
    options: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    internal: bool = False
    containers: int = 0

    @property
    def gateway_mode_ipv4(self) -> str | None:
        return self.options.get(GATEWAY_MODE_V4)

    @property
    def default_bridge(self) -> bool:
        return self.options.get("com.docker.network.bridge.default_bridge") == "true" or \
            (self.name == "bridge" and self.driver == "bridge")


def network_from_inspect(data: dict[str, Any]) -> EngineNetwork:
    subnets = []
    for cfg in (data.get("IPAM") or {}).get("Config") or []:
        try:
            net = ipaddress.ip_network(str(cfg.get("Subnet", "")), strict=False)
        except ValueError:
            continue
        if isinstance(net, ipaddress.IPv4Network):
            subnets.append(net)
    return EngineNetwork(
        id=str(data.get("Id", "")), name=str(data.get("Name", "")), driver=str(data.get("Driver", "")),
        scope=str(data.get("Scope", "")), subnets=tuple(subnets),
        options={str(k): str(v) for k, v in (data.get("Options") or {}).items()},
        internal=bool(data.get("Internal")), containers=len(data.get("Containers") or {}))


def list_networks(client: Any) -> list[EngineNetwork]:
    """Every local-scope network with IPv4 subnets (the default bridge included); ``client``
    is an :class:`EngineReader` or an SDK client."""
    try:
        raw = client.networks() if isinstance(client, EngineReader) else client.api.networks()
    except CommandFailed:
        raise
    except Exception as exc:  # requests/SDK errors: one line
        raise CommandFailed(f"cannot list the engine's networks: {_short(exc)}") from exc
    out = [network_from_inspect(n) for n in raw]
    return sorted((n for n in out if n.scope == "local" and n.subnets), key=lambda n: n.name)


def engine_version(client: Any) -> str:
    if isinstance(client, EngineReader):
        return str(client.version().get("Version", ""))
    try:
        return str(client.version().get("Version", ""))
    except Exception as exc:
        raise CommandFailed(f"cannot read the engine version: {_short(exc)}") from exc


def major(version: str) -> int:
    m = re.match(r"^v?(\d+)", version or "")
    return int(m.group(1)) if m else 0


def reachability(version: str, network: EngineNetwork) -> str:
    """"direct": every container port answers routed traffic; "published-only": Engine >= 28
    drops routed traffic to unpublished ports on this network (gateway mode nat or routed)."""
    if major(version) < 28:
        return "direct"
    if network.gateway_mode_ipv4 == UNPROTECTED:
        return "direct"
    return "published-only"


def unprotect_advice(network: EngineNetwork) -> str:
    if network.default_bridge:
        return ("the default bridge cannot change its gateway mode: run containers on a user network "
                f"made with docker network create -o {GATEWAY_MODE_V4}={UNPROTECTED} NAME, "
                "or publish their ports (-p)")
    return (f"labctl route add --unprotect {network.name} (recreates the network with "
            f"-o {GATEWAY_MODE_V4}={UNPROTECTED}; it must have no containers), or publish the ports")


def recreate_args(data: dict[str, Any]) -> dict[str, Any]:
    """Arguments for client.networks.create that recreate ``data`` (an inspect result) with
    gateway_mode_ipv4=nat-unprotected, keeping driver, IPAM, options and labels."""
    import docker.types

    name = str(data.get("Name", ""))
    if name in PREDEFINED:
        raise Conflict(f"{name} is a predefined network; its gateway mode cannot be changed",
                       unprotect_advice(network_from_inspect(data)))
    if data.get("Containers"):
        n = len(data["Containers"])
        raise Conflict(f"network {name} has {n} container(s) attached; it must be empty to be recreated",
                       f"stop or disconnect them (docker network disconnect {name} CONTAINER), then retry")
    ipam = data.get("IPAM") or {}
    pools = [docker.types.IPAMPool(subnet=c.get("Subnet"), iprange=c.get("IPRange") or None,
                                   gateway=c.get("Gateway") or None)
             for c in ipam.get("Config") or []]
    options = dict(data.get("Options") or {})
    options[GATEWAY_MODE_V4] = UNPROTECTED
    return {
        "name": name, "driver": data.get("Driver") or "bridge", "options": options,
        "ipam": docker.types.IPAMConfig(driver=ipam.get("Driver") or "default", pool_configs=pools),
        "internal": bool(data.get("Internal")), "labels": data.get("Labels") or None,
        "enable_ipv6": bool(data.get("EnableIPv6")), "attachable": bool(data.get("Attachable")),
    }


def unprotect(client: Any, name: str) -> bool:
    """Recreate network ``name`` with nat-unprotected.  False: it already was."""
    from docker.errors import NotFound

    try:
        data = client.api.inspect_network(name)
    except NotFound as exc:
        raise InvalidInput(f"no Docker network named {name!r}") from exc
    if (data.get("Options") or {}).get(GATEWAY_MODE_V4) == UNPROTECTED:
        return False
    args = recreate_args(data)
    client.api.remove_network(data["Id"])
    client.networks.create(**args)
    return True


def events(client: Any, since: float | None = None):
    """Network create/destroy events (a blocking generator)."""
    return client.events(decode=True, since=since,
                         filters={"type": "network", "event": ["create", "destroy"]})


@contextlib.contextmanager
def probe_container(client: Any, image: str, port: int) -> Iterator[tuple[str, str]]:
    """A throw-away busybox httpd on ``port`` with no published port, on the default bridge:
    yields (name, its IP); always removed afterwards."""
    import secrets

    from docker.errors import DockerException, ImageNotFound

    name = f"labctl-probe-{secrets.token_hex(3)}"
    container = None
    try:
        try:
            client.images.get(image)
        except ImageNotFound:
            repo, _, tag = image.partition(":")
            client.images.pull(repo, tag=tag or "latest")
        container = client.containers.run(
            image, ["httpd", "-f", "-p", str(port), "-h", "/"], name=name, detach=True,
            labels={"labctl.probe": "1"}, auto_remove=False)
        deadline = time.monotonic() + 10
        ip = ""
        while time.monotonic() < deadline:
            container.reload()
            nets = container.attrs.get("NetworkSettings", {}).get("Networks") or {}
            ip = next((n.get("IPAddress") for n in nets.values() if n.get("IPAddress")), "")
            if ip and container.status == "running":
                break
            if container.status == "exited":
                raise CommandFailed(f"the probe container exited at once: "
                                    f"{container.logs(tail=3).decode(errors='replace').strip()}",
                                    "use an image with busybox's httpd: --probe-image busybox:latest")
            time.sleep(0.1)
        if not ip:
            raise CommandFailed("the probe container got no IP address on the default bridge")
        time.sleep(0.2)  # httpd binds right after exec
        yield name, ip
    except DockerException as exc:
        raise CommandFailed(f"cannot run the probe container ({image}): {_short(exc)}",
                            f"check the engine can pull {image}, or pass --probe-image") from exc
    finally:
        if container is not None:
            with contextlib.suppress(Exception):
                container.remove(force=True)

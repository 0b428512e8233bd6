"""The lab description: one machine from command-line flags, or several from a ``lab.toml``.

    # lab.toml
    [defaults]                 # optional; any machine key except name/ip/bip/pool
    driver = "vmware"
    cpus = 2
    memory = 2048              # MB
    disk = 20000               # MB
    nic = "dedicated"          # dedicated | existing
    vmnet = "vmnet2"           # vmnetN | auto
    subnet = "192.168.99.0/24"

    [engine]                   # optional
    ranges = ["172.17.0.0/16", "172.18.0.0/15", "172.20.0.0/14", "172.24.0.0/13"]
    pool_size = 24

    [[machine]]
    name = "lab1"
    ip = "192.168.99.10"       # or "auto"

    [[machine]]
    name = "lab2"
    bip = "172.30.0.1/16"      # optional: pin the engine's bridge ...
    pool = "172.31.0.0/16"     # ... and its default-address-pool base

    [[machine]]                # adopt a Linux VM you installed (docker-machine's generic driver)
    name = "arm"
    vmx = "~/Virtual Machines.localized/debian.vmwarevm/debian.vmx"   # relative: to lab.toml
    ssh_user = "lab"           # default: your login name
    ssh_key = "~/.ssh/id_ed25519"

    # any machine (or [defaults]): CA certificates its engine must trust (PEM or DER), e.g. a
    # corporate root CA behind TLS inspection; relative paths: to lab.toml
    # ca_certs = ["corp-root.cer"]
    # the engine's proxies (NO_PROXY gets the lab's subnets appended), registry mirrors and
    # insecure registries (docker-machine's --engine-env, --engine-registry-mirror,
    # --engine-insecure-registry; changed on an existing machine without re-creating it)
    # engine_env = ["HTTP_PROXY=http://proxy.corp.example:3128", "HTTPS_PROXY=http://proxy.corp.example:3128"]
    # registry_mirrors = ["https://mirror.corp.example"]
    # insecure_registries = ["registry.lab.example:5000"]

Everything is validated before anything runs; every problem is an :class:`InvalidInput`
(exit 2) naming the file, the machine and the key.  :func:`allocate_engines` then gives each
machine its own ``bip`` and ``default-address-pool`` so that no two machines' container
subnets, and no host network or VPN route passed in, overlap.  It is deterministic: same
spec and same avoid list, same answer.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

from labctl.errors import Conflict, InvalidInput

DRIVERS = ("vmwarefusion", "vmware")
GENERIC = "generic"  # docker-machine's driver for a VM labctl adopts (--adopt / vmx = …)
NICS = ("dedicated", "existing")

DEFAULT_NAME = "lab"
DEFAULT_CPUS = 2
DEFAULT_MEMORY = 2048
DEFAULT_DISK = 20000
DEFAULT_NIC = "dedicated"
DEFAULT_POOL_SIZE = 24

#: where engine subnets are taken from, in order: Docker's own 172.17-172.31 first, then a
#: corner of 10/8 that home routers and most VPNs leave alone.
DEFAULT_RANGES: tuple[IPv4Network, ...] = (
    IPv4Network("172.17.0.0/16"), IPv4Network("172.18.0.0/15"), IPv4Network("172.20.0.0/14"),
    IPv4Network("172.24.0.0/13"), IPv4Network("10.200.0.0/13"),
)
BLOCK_PREFIX = 16  # the bip and the pool base are one /16 each

MACHINE_KEYS = ("name", "driver", "cpus", "memory", "disk", "nic", "vmnet", "subnet", "ip", "bip", "pool",
                "vmx", "ssh_user", "ssh_key", "engine_opts", "ca_certs", "engine_env", "registry_mirrors",
                "insecure_registries")
DEFAULT_KEYS = ("driver", "cpus", "memory", "disk", "nic", "vmnet", "subnet", "ssh_user", "ssh_key",
                "engine_opts", "ca_certs", "engine_env", "registry_mirrors", "insecure_registries")
SIZE_KEYS = ("cpus", "memory", "disk")
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
# a dockerd flag for --engine-opt: name=value, nothing a shell or a unit file could misread
_ENGINE_OPT = re.compile(r"[a-z][a-z0-9-]{0,63}=[A-Za-z0-9._:/,=@+-]{1,256}")
_OWN_OPTS = ("bip", "default-address-pool")  # labctl allocates these (bip/pool keys)
ENGINE_KEYS = ("ranges", "pool_size")
TOP_KEYS = ("defaults", "engine", "machine")


@dataclass(frozen=True)
class MachineSpec:
    name: str
    driver: str
    cpus: int = DEFAULT_CPUS
    memory: int = DEFAULT_MEMORY  # MB
    disk: int = DEFAULT_DISK  # MB
    nic: str = DEFAULT_NIC
    vmnet: int | None = None  # None: auto
    subnet: IPv4Network | None = None  # the vmnet's subnet; None: whatever it has / auto
    ip: IPv4Address | None = None  # None: auto
    bip: IPv4Interface | None = None  # None: allocate
    pool: IPv4Network | None = None  # None: allocate
    vmx: Path | None = None  # adopt this VM (driver generic) instead of creating one
    ssh_user: str | None = None  # adopt: the VM's user with passwordless sudo (None: login name)
    ssh_key: Path | None = None  # adopt: its private key (None: ~/.ssh/id_ed25519 or id_rsa)
    engine_opts: tuple[str, ...] = ()  # extra dockerd flags for a new machine (--engine-opt)
    ca_certs: tuple[Any, ...] = ()  # labctl.vmcerts.CaCert: CAs the engine must trust (--ca-cert)
    # the engine's environment (proxies), registry mirrors, insecure registries (labctl.engineconf)
    engine_env: tuple[str, ...] = ()  # KEY=VALUE, checked
    registry_mirrors: tuple[str, ...] = ()
    insecure_registries: tuple[str, ...] = ()

    @property
    def engine_settings(self) -> Any:
        """labctl.engineconf.Settings of --engine-env / --registry-mirror / --insecure-registry."""
        from labctl import engineconf

        return engineconf.wanted(self.engine_env, self.registry_mirrors, self.insecure_registries)

    @property
    def adopting(self) -> bool:
        return self.vmx is not None


@dataclass(frozen=True)
class EngineNets:
    """One machine's engine networks: docker0 and the pool user networks come from."""

    bip: IPv4Interface
    pool: IPv4Network
    pool_size: int = DEFAULT_POOL_SIZE

    @property
    def networks(self) -> list[IPv4Network]:
        return [self.bip.network, self.pool]

    def engine_opts(self) -> list[str]:
        """``--engine-opt`` values for docker-machine create."""
        return [f"bip={self.bip.with_prefixlen}",
                f"default-address-pool=base={self.pool.with_prefixlen},size={self.pool_size}"]


@dataclass(frozen=True)
class LabSpec:
    machines: tuple[MachineSpec, ...]
    ranges: tuple[IPv4Network, ...] = DEFAULT_RANGES
    pool_size: int = DEFAULT_POOL_SIZE
    source: Path | None = None

    def machine(self, name: str) -> MachineSpec:
        for m in self.machines:
            if m.name.lower() == name.lower():
                return m
        where = f" in {self.source}" if self.source else ""
        raise InvalidInput(f"no machine named {name!r}{where}",
                           "known: " + ", ".join(m.name for m in self.machines))

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.machines]


# ---- validation helpers -----------------------------------------------------------------------
class _Ctx:
    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, key: str, msg: str, remedy: str | None = None) -> InvalidInput:
        return InvalidInput(f"{self.where}: {key}: {msg}", remedy)


def check_name(name: Any, where: str = "machine name") -> str:
    from labctl import validate

    return validate.machine_name(name, where)


def _int(ctx: _Ctx, key: str, value: Any, lo: int, hi: int, unit: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        else:
            raise ctx.fail(key, f"expected a whole number, got {value!r}")
    if not lo <= value <= hi:
        raise ctx.fail(key, f"{value}{unit} is out of range ({lo}-{hi}{unit})")
    return value


def _choice(ctx: _Ctx, key: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ctx.fail(key, f"expected one of {', '.join(choices)}, got {value!r}")
    return value


def _vmnet(ctx: _Ctx, value: Any) -> int | None:
    if value is None or value == "auto":
        return None
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if is_int or (isinstance(value, str) and value.isdigit()):
        value = f"vmnet{value}"
    m = re.fullmatch(r"vmnet(\d{1,3})", value) if isinstance(value, str) else None
    if not m or int(m.group(1)) > 255:
        raise ctx.fail("vmnet", f"expected vmnetN (e.g. vmnet2) or auto, got {value!r}")
    n = int(m.group(1))
    if n == 0:
        raise ctx.fail("vmnet", "vmnet0 is the bridged network: VMware runs no DHCP server there",
                       "use a host-only vmnet such as vmnet2")
    return n


def _network(ctx: _Ctx, key: str, value: Any) -> IPv4Network:
    try:
        net = IPv4Network(value if isinstance(value, str) else "?", strict=True)
    except ValueError as exc:
        raise ctx.fail(key, f"expected an IPv4 network like 192.168.99.0/24, got {value!r} ({exc})") from exc
    return net


def _subnet(ctx: _Ctx, value: Any) -> IPv4Network | None:
    if value is None or value == "auto":
        return None
    from labctl import validate

    net = _network(ctx, "subnet", value)
    problem = validate.vmnet_subnet_problem(net)
    if problem:
        raise ctx.fail("subnet", problem, "use e.g. 192.168.99.0/24")
    return net


def _ip(ctx: _Ctx, value: Any, subnet: IPv4Network | None) -> IPv4Address | None:
    if value is None or value == "auto":
        return None
    try:
        ip = IPv4Address(value if isinstance(value, str) else "?")
    except ValueError as exc:
        raise ctx.fail("ip", f"expected an IPv4 address or auto, got {value!r}") from exc
    if subnet is not None:
        if ip not in subnet:
            raise ctx.fail("ip", f"{ip} is not in the subnet {subnet}")
        if ip in (subnet.network_address, subnet.broadcast_address, subnet.network_address + 1):
            raise ctx.fail("ip", f"{ip} is the network, broadcast or host (.1) address of {subnet}")
    return ip


def _bip(ctx: _Ctx, value: Any) -> IPv4Interface | None:
    if value is None:
        return None
    try:
        iface = IPv4Interface(value if isinstance(value, str) else "?")
    except ValueError as exc:
        raise ctx.fail("bip", f"expected an address with prefix like 172.17.0.1/16, got {value!r}") from exc
    if iface.ip in (iface.network.network_address, iface.network.broadcast_address) or \
            iface.network.prefixlen > 28:
        raise ctx.fail("bip", f"{value} is not a usable bridge address")
    return iface


def _engine_opts(ctx: _Ctx, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ctx.fail("engine_opts", f"expected a list of dockerd flags, got {value!r}")
    out = []
    for opt in value:
        if not isinstance(opt, str) or not _ENGINE_OPT.fullmatch(opt.removeprefix("--")):
            raise ctx.fail("engine_opts", f"{opt!r} is not a dockerd flag=value like "
                                          "allow-direct-routing=true or log-level=debug")
        opt = opt.removeprefix("--")
        if opt.split("=", 1)[0] in _OWN_OPTS:
            raise ctx.fail("engine_opts", f"{opt.split('=', 1)[0]} is labctl's to choose",
                           "set bip / pool instead")
        out.append(opt)
    return tuple(out)


def _strings(ctx: _Ctx, key: str, value: Any, check: Any, example: str) -> tuple[str, ...]:
    """A list of values (flags or lab.toml), each checked by ``check`` (one line per problem)."""
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ctx.fail(key, f"expected a list such as {example}, got {value!r}")
    out = []
    for v in value:
        try:
            checked = check(v)
        except InvalidInput as exc:
            raise ctx.fail(key, exc.message, exc.remedy) from None
        out.append("=".join(checked) if isinstance(checked, tuple) else checked)
    return tuple(dict.fromkeys(out))


def _ca_certs(ctx: _Ctx, value: Any, base: Path | None) -> tuple[Any, ...]:
    """The CA files (PEM or DER), read and checked now: a bad one stops before any change."""
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ctx.fail("ca_certs", f"expected a list of certificate files, got {value!r}")
    from labctl import vmcerts

    paths = [_path(ctx, "ca_certs", v, base) for v in value]
    try:
        return tuple(vmcerts.load_certs(p for p in paths if p is not None))
    except InvalidInput as exc:
        raise ctx.fail("ca_certs", exc.message) from None


def _check_keys(where: str, table: Any, allowed: Sequence[str]) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise InvalidInput(f"{where}: expected a table, got {type(table).__name__}")
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise InvalidInput(f"{where}: unknown key{'s' * (len(unknown) > 1)} {', '.join(unknown)}",
                           f"allowed: {', '.join(allowed)}")
    return table


def _path(ctx: _Ctx, key: str, value: Any, base: Path | None) -> Path | None:
    """A file path from flags or lab.toml: ``~`` expanded, relative to lab.toml's folder (or
    the working directory), no control characters (it reaches docker-machine's argv)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ctx.fail(key, f"expected a file path, got {value!r}")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ctx.fail(key, "the path contains control characters")
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return Path(os.path.normpath(path))


def _adopt(ctx: _Ctx, raw: dict[str, Any], base: Path | None) -> tuple[Path | None, str | None, Path | None]:
    vmx = _path(ctx, "vmx", raw.get("vmx"), base)
    user = raw.get("ssh_user")
    key = _path(ctx, "ssh_key", raw.get("ssh_key"), base)
    if vmx is None:
        return None, None, None
    if vmx.suffix.lower() != ".vmx":
        raise ctx.fail("vmx", f"{vmx} is not a .vmx file",
                       "give the VM's configuration file, e.g. …/debian.vmwarevm/debian.vmx")
    if raw.get("driver") not in (None, GENERIC):
        raise ctx.fail("driver", f"an adopted VM is provisioned with docker-machine's generic driver, "
                       f"not {raw['driver']}", "leave out the driver")
    sized = [k for k in SIZE_KEYS if raw.get(k) is not None]
    if sized:
        raise ctx.fail(sized[0], "labctl does not size a VM it adopts",
                       "change the VM's CPUs, memory and disk in VMware, or leave these out")
    if user is not None and (not isinstance(user, str) or not USER_RE.fullmatch(user)):
        raise ctx.fail("ssh_user", f"invalid user name {user!r}",
                       "a Linux user name: lower-case letters, digits, '_' and '-'")
    return vmx, user, key


def machine_spec(raw: dict[str, Any], where: str, platform: str,
                 base: Path | None = None) -> MachineSpec:
    """One machine from a dict of raw values (flags or TOML), validated."""
    from labctl import engineconf

    name = check_name(raw.get("name"), where)
    ctx = _Ctx(f"{where} ({name})" if where != "flags" else "flags")
    vmx, ssh_user, ssh_key = _adopt(ctx, raw, base)
    if vmx is not None:
        driver = GENERIC
    else:
        driver = raw.get("driver") or ("vmwarefusion" if platform == "darwin" else "vmware")
        driver = _choice(ctx, "driver", driver, DRIVERS)
    if driver == "vmwarefusion" and platform != "darwin":
        raise ctx.fail("driver", "vmwarefusion exists only on macOS",
                       "use driver = \"vmware\" (the docker-machine-driver-vmware plugin)")
    subnet = _subnet(ctx, raw.get("subnet"))
    pool = raw.get("pool")
    nic = _choice(ctx, "nic", raw.get("nic", DEFAULT_NIC), NICS)
    vmnet = _vmnet(ctx, raw.get("vmnet"))
    if nic == "dedicated" and vmnet == 8:
        raise ctx.fail("vmnet", "vmnet8 is the NAT network ethernet0 already uses",
                       "the dedicated NIC needs a host-only vmnet such as vmnet2")
    return MachineSpec(
        name=name,
        driver=driver,
        cpus=_int(ctx, "cpus", raw.get("cpus", DEFAULT_CPUS), 1, 16),
        memory=_int(ctx, "memory", raw.get("memory", DEFAULT_MEMORY), 512, 1 << 20, " MB"),
        disk=_int(ctx, "disk", raw.get("disk", DEFAULT_DISK), 2000, 1 << 22, " MB"),
        nic=nic,
        vmnet=vmnet,
        subnet=subnet,
        ip=_ip(ctx, raw.get("ip"), subnet),
        bip=_bip(ctx, raw.get("bip")),
        pool=None if pool is None else _network(ctx, "pool", pool),
        vmx=vmx,
        ssh_user=ssh_user,
        ssh_key=ssh_key,
        engine_opts=_engine_opts(ctx, raw.get("engine_opts")),
        ca_certs=_ca_certs(ctx, raw.get("ca_certs"), base),
        engine_env=_strings(ctx, "engine_env", raw.get("engine_env"), engineconf.env_entry,
                            '["HTTPS_PROXY=http://proxy.example:3128"]'),
        registry_mirrors=_strings(ctx, "registry_mirrors", raw.get("registry_mirrors"), engineconf.mirror,
                                  '["https://mirror.example"]'),
        insecure_registries=_strings(ctx, "insecure_registries", raw.get("insecure_registries"),
                                     engineconf.insecure_registry, '["registry.lab.example:5000"]'),
    )


def _cross_check(machines: Sequence[MachineSpec], where: str) -> None:
    seen: dict[str, str] = {}
    ips: dict[IPv4Address, str] = {}
    subnets: dict[int, tuple[IPv4Network, str]] = {}
    for m in machines:
        key = m.name.lower()  # the macOS store is case-insensitive
        if key in seen:
            raise InvalidInput(f"{where}: machine name {m.name!r} appears twice",
                               "give each machine its own name")
        seen[key] = m.name
        if m.ip is not None:
            if m.ip in ips:
                raise InvalidInput(f"{where}: machines {ips[m.ip]} and {m.name} both want {m.ip}")
            ips[m.ip] = m.name
        if m.vmnet is not None and m.subnet is not None:
            other = subnets.get(m.vmnet)
            if other and other[0] != m.subnet:
                raise InvalidInput(f"{where}: vmnet{m.vmnet} cannot be {other[0]} for {other[1]} "
                                   f"and {m.subnet} for {m.name}")
            subnets[m.vmnet] = (m.subnet, m.name)


def from_flags(platform: str, name: str | None = None, *, driver: str | None = None,
               cpus: int | None = None, memory: int | None = None, disk: int | None = None,
               nic: str | None = None, vmnet: str | None = None, subnet: str | None = None,
               ip: str | None = None, vmx: str | None = None, ssh_user: str | None = None,
               ssh_key: str | None = None, engine_opts: Sequence[str] | None = None,
               ca_certs: Sequence[str] | None = None, engine_env: Sequence[str] | None = None,
               registry_mirrors: Sequence[str] | None = None,
               insecure_registries: Sequence[str] | None = None) -> LabSpec:
    """The single machine of ``labctl up [NAME] --driver … --cpus …`` (None = default)."""
    raw: dict[str, Any] = {"name": name or DEFAULT_NAME}
    for key, value in (("driver", driver), ("cpus", cpus), ("memory", memory), ("disk", disk),
                       ("nic", nic), ("vmnet", vmnet), ("subnet", subnet), ("ip", ip),
                       ("vmx", vmx), ("ssh_user", ssh_user), ("ssh_key", ssh_key),
                       ("engine_opts", list(engine_opts) if engine_opts else None),
                       ("ca_certs", list(ca_certs) if ca_certs else None),
                       ("engine_env", list(engine_env) if engine_env else None),
                       ("registry_mirrors", list(registry_mirrors) if registry_mirrors else None),
                       ("insecure_registries", list(insecure_registries) if insecure_registries else None)):
        if value is not None:
            raw[key] = value
    return LabSpec(machines=(machine_spec(raw, "flags", platform),))


def parse(data: dict[str, Any], platform: str, source: Path | None = None) -> LabSpec:
    where = str(source) if source else "lab.toml"
    _check_keys(where, data, TOP_KEYS)
    defaults = _check_keys(f"{where} [defaults]", data.get("defaults", {}), DEFAULT_KEYS)
    engine = _check_keys(f"{where} [engine]", data.get("engine", {}), ENGINE_KEYS)
    items = data.get("machine")
    if not isinstance(items, list) or not items:
        raise InvalidInput(f"{where}: no machines", 'add at least one [[machine]] table with a name = "…"')
    machines = []
    for i, item in enumerate(items, 1):
        table = _check_keys(f"{where} [[machine]] #{i}", item, MACHINE_KEYS)
        merged = {**defaults, **table}
        if "vmx" in table:  # sizes and drivers of [defaults] are for the machines labctl creates
            merged = {k: v for k, v in merged.items() if k in table or k not in (*SIZE_KEYS, "driver")}
        machines.append(machine_spec(merged, f"{where} [[machine]] #{i}", platform,
                                     base=source.parent if source else None))
    _cross_check(machines, where)
    ctx = _Ctx(f"{where} [engine]")
    ranges = DEFAULT_RANGES
    if "ranges" in engine:
        if not isinstance(engine["ranges"], list) or not engine["ranges"]:
            raise ctx.fail("ranges", "expected a non-empty list of networks")
        ranges = tuple(_network(ctx, "ranges", r) for r in engine["ranges"])
        for r in ranges:
            if r.prefixlen > BLOCK_PREFIX:
                raise ctx.fail("ranges", f"{r} is smaller than a /{BLOCK_PREFIX}")
    pool_size = _int(ctx, "pool_size", engine.get("pool_size", DEFAULT_POOL_SIZE), 17, 29)
    return LabSpec(machines=tuple(machines), ranges=ranges, pool_size=pool_size, source=source)


def load(path: Path, platform: str) -> LabSpec:
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise InvalidInput(f"lab description {path} not found") from exc
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path} is not UTF-8 text") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{path} is not valid TOML: {exc}") from exc
    return parse(data, platform, Path(path))


# ---- engine subnets -------------------------------------------------------------------------------
def _relevant(avoid: Iterable[IPv4Network | str]) -> list[IPv4Network]:
    """Routes to stay clear of.  Default-like routes (shorter than /8: 0.0.0.0/0, and the
    0.0.0.0/1 + 128.0.0.0/1 pair full-tunnel VPNs install) are ignored: they overlap
    everything and more specific routes (ours) win over them."""
    out = []
    for n in avoid:
        net = IPv4Network(n, strict=False) if isinstance(n, str) else n
        if net.prefixlen >= 8:
            out.append(net)
    return out


def _blocks(ranges: Sequence[IPv4Network]) -> list[IPv4Network]:
    out: list[IPv4Network] = []
    for r in ranges:
        for b in r.subnets(new_prefix=BLOCK_PREFIX) if r.prefixlen < BLOCK_PREFIX else [r]:
            if b not in out:
                out.append(b)
    return out


def allocate_engines(spec: LabSpec, avoid: Iterable[IPv4Network | str] = ()) -> dict[str, EngineNets]:
    """Each machine's ``bip`` and default-address-pool, in spec order, pinned values first.
    Raises Conflict if a pinned value overlaps, or InvalidInput-like Conflict if space runs out."""
    taken: list[tuple[IPv4Network, str]] = [(n, "a host network or VPN route") for n in _relevant(avoid)]
    for m in spec.machines:
        if m.subnet is not None:
            taken.append((m.subnet, f"vmnet subnet of {m.name}"))

    def clash(net: IPv4Network) -> str | None:
        for other, what in taken:
            if net.overlaps(other):
                return f"{other} ({what})"
        return None

    result: dict[str, EngineNets] = {}
    for m in spec.machines:  # pinned first, so allocation works around them
        for net, label in ((m.bip.network if m.bip else None, "bip"), (m.pool, "pool")):
            if net is None:
                continue
            hit = clash(net)
            if hit:
                raise Conflict(f"{m.name}: {label} {net} overlaps {hit}",
                               f"pick another {label} for {m.name}, or leave it out and labctl picks one")
            taken.append((net, f"{label} of {m.name}"))
    blocks = _blocks(spec.ranges)
    for m in spec.machines:
        picked: list[IPv4Network] = []
        need = (m.bip is None) + (m.pool is None)
        for b in blocks:
            if len(picked) == need:
                break
            if clash(b) is None:
                picked.append(b)
                taken.append((b, f"engine of {m.name}"))
        if len(picked) < need:
            raise Conflict(
                f"no free /{BLOCK_PREFIX} left for the engine of {m.name} in "
                f"{', '.join(str(r) for r in spec.ranges)} (host routes and other machines use them)",
                "add [engine] ranges = [\"10.200.0.0/13\"] (any private space free on this desktop) "
                "to lab.toml")
        it = iter(picked)
        bip = m.bip or IPv4Interface(f"{next(it).network_address + 1}/{BLOCK_PREFIX}")
        pool = m.pool or next(it)
        if spec.pool_size < pool.prefixlen:
            raise Conflict(f"{m.name}: pool {pool} is smaller than pool_size /{spec.pool_size}")
        result[m.name] = EngineNets(bip=bip, pool=pool, pool_size=spec.pool_size)
    return result


def with_engines(spec: LabSpec, nets: dict[str, EngineNets]) -> LabSpec:
    """The spec with every machine's bip and pool filled in (for state and status)."""
    return replace(spec, machines=tuple(
        replace(m, bip=nets[m.name].bip, pool=nets[m.name].pool) if m.name in nets else m
        for m in spec.machines))


def engine_nets_from_flags(flags: Sequence[str], pool_size: int = DEFAULT_POOL_SIZE) -> EngineNets | None:
    """Read back ``bip=…`` / ``default-address-pool=base=…,size=…`` from a machine's config.json
    ArbitraryFlags (what ``docker-machine create --engine-opt`` stored)."""
    bip = pool = None
    size = pool_size
    for f in flags:
        if f.startswith("bip="):
            bip = IPv4Interface(f[4:])
        elif f.startswith("default-address-pool="):
            parts = dict(p.split("=", 1) for p in f.split("=", 1)[1].split(",") if "=" in p)
            pool = IPv4Network(parts.get("base", ""), strict=False)
            size = int(parts.get("size", size))
    if bip is None or pool is None:
        return None
    return EngineNets(bip=bip, pool=pool, pool_size=size)


__all__ = [
    "EngineNets", "LabSpec", "MachineSpec", "allocate_engines", "check_name", "engine_nets_from_flags",
    "from_flags", "load", "parse", "with_engines",
]

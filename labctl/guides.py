"""Console recovery guides: numbered, exact steps to get back into a locked lab VM.

A guide's content lives in a jinja2 template (``templates/guides/*.j2``) written as plain
step blocks::

    title: Reset the root password of Photon OS 4
    note: something the reader must know first
    @step
    do: What to do (`exact input` in backticks); a line that starts with
        no field name continues the field above.
    expect: What the user should see.
    if_not: What to do when they don't.

``build`` renders the template and reads those blocks into a ``Guide``; ``render`` prints
a Guide as text, Markdown or JSON (``[{"n", "do", "expect", "if_not"}]``).  Which guide
and which variant follow from the VM: ``resolve_vm`` finds its ``.vmx`` (a path, a
docker-machine name or a name that ``vmrun list`` shows) and ``guest_kind`` /
``photon_version`` read what the ``.vmx`` says.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.errors import InvalidInput, MalformedFile, PreconditionMissing
from labctl.hypervisor.base import VmConfig as Vmx
from labctl.paths import Paths

FORMATS = ("text", "markdown", "json")
PHOTON_VERSIONS = (1, 2, 3, 4, 5)
NEWEST_PHOTON = max(PHOTON_VERSIONS)
FIELDS = ("do", "expect", "if_not")


# ---- the guide model ----------------------------------------------------------------------------
@dataclass(frozen=True)
class GuideStep:
    n: int
    do: str
    expect: str
    if_not: str

    def as_dict(self) -> dict[str, Any]:
        return {"n": self.n, "do": self.do, "expect": self.expect, "if_not": self.if_not}


@dataclass
class Guide:
    kind: str  # photon | coreos | boot2docker
    title: str
    steps: list[GuideStep]
    notes: list[str] = field(default_factory=list)
    vm: VmInfo | None = None

    def as_list(self) -> list[dict[str, Any]]:
        return [s.as_dict() for s in self.steps]


def parse_guide(text: str, kind: str) -> Guide:
    """Read the step blocks a guide template rendered (see the module docstring)."""
    title = ""
    notes: list[str] = []
    raw: list[dict[str, str]] = []
    current: tuple[dict[str, str], str] | None = None  # (target, field) continuation lines go to
    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        if s == "@step":
            raw.append({})
            current = None
            continue
        key, sep, value = s.partition(":")
        key = key.strip()
        if sep and key in ("title", "note") and not raw:
            if key == "title":
                title = value.strip()
                current = None
            else:
                notes.append(value.strip())
                current = None
            continue
        if sep and key in FIELDS and raw:
            step = raw[-1]
            if key in step:
                raise MalformedFile(f"guide template ({kind}) line {lineno}: {key} given twice")
            step[key] = value.strip()
            current = (step, key)
            continue
        if current is None:
            raise MalformedFile(f"guide template ({kind}) line {lineno}: text outside a field: {s!r}")
        target, name = current
        target[name] = (target[name] + " " + s).strip()
    steps = []
    for n, step in enumerate(raw, 1):
        missing = [f for f in FIELDS if not step.get(f)]
        if missing:
            raise MalformedFile(f"guide template ({kind}) step {n} has no {', '.join(missing)}")
        steps.append(GuideStep(n=n, do=step["do"], expect=step["expect"], if_not=step["if_not"]))
    if not title or not steps:
        raise MalformedFile(f"guide template ({kind}) has no title or no steps")
    return Guide(kind=kind, title=title, steps=steps, notes=notes)


def build(template: str, kind: str, **context: Any) -> Guide:
    from labctl.render import render as render_template

    return parse_guide(render_template(template, **context), kind)


def render(guide: Guide, fmt: str, columns: int | None = None) -> str:
    """The guide as ``text`` (wrapped to ``columns``: default the terminal's width, 80 in a
    pipe), ``markdown`` or ``json``."""
    from labctl.render import render as render_template

    if fmt == "json":
        from labctl.documents import document

        doc = document("guide", {"kind": guide.kind, "title": guide.title, "notes": guide.notes,
                                 "steps": guide.as_list()})
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    context: dict[str, Any] = {"guide": guide, "vm": guide.vm}
    if fmt == "markdown":
        return render_template("guides/format.md.j2", **context)
    if fmt == "text":
        import sys

        from labctl.ui import prose_width

        columns = columns or prose_width(sys.stdout)
        wrapped = []
        for s in guide.steps:
            head = f"{s.n:>2}. "
            pad = " " * len(head)
            wrapped.append({
                "do": _fill(s.do, head, pad, columns),
                "expect": _fill(s.expect, pad + "You should see: ", pad + "  ", columns),
                "if_not": _fill(s.if_not, pad + "If not: ", pad + "  ", columns),
            })
        notes = [_fill(n, "Note: ", "  ", columns) for n in guide.notes]
        title = _fill(guide.title, "", "", columns)
        vm = guide.vm
        where = (_fill(f"VM: {vm.name} ({vm.vmx_path}, guestOS {vm.guest_os or 'not set'}, found as "
                       f"{vm.source})", "", "  ", columns) if vm else "")
        rule = min(columns, max(len(line) for line in title.splitlines()))
        return render_template("guides/format.text.j2", steps=wrapped, wrapped_notes=notes,
                               wrapped_title=title, wrapped_vm=where, rule=rule, **context)
    raise InvalidInput(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")


def _fill(text: str, first: str, rest: str, width: int = 80) -> str:
    """Wrap for a terminal without ever breaking inside a `code span`: commands stay whole."""
    from labctl.ui import fill

    return fill(text, width, first, rest)


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown --format {fmt!r}: expected one of {', '.join(FORMATS)}")
    return fmt


# ---- knowing the VM -----------------------------------------------------------------------------
@dataclass
class VmInfo:
    name: str  # what to call it: displayName, else the .vmx file name
    vmx_path: Path
    source: str  # "path" | "docker-machine" | "vmrun list"
    vmx: Vmx
    in_machine_store: bool = False
    machine: str | None = None  # the docker-machine name, for a VM in the machine store

    @property
    def guest_os(self) -> str:
        return (self.vmx.guest_os or "").strip()

    @property
    def display_name(self) -> str | None:
        value = self.vmx.display_name
        return unescape(value) if value else None


def unescape(value: str) -> str:
    """.vmx values escape some characters as ``|XX`` (hex); show them as the characters."""
    return re.sub(r"\|([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), value)


def machine_store(paths: Paths) -> Path:
    """docker-machine's storage path: $MACHINE_STORAGE_PATH, else ~/.docker/machine."""
    from labctl.machine import storage_path

    return storage_path().expanduser()


def read_vmx(path: Path) -> Vmx:
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise InvalidInput(f"no such .vmx file: {path}") from exc
    except IsADirectoryError as exc:
        raise InvalidInput(f"{path} is a directory, not a .vmx file") from exc
    except PermissionError as exc:
        raise PreconditionMissing(f"cannot read {path}: permission denied",
                                  "run labctl as the user who owns the VM") from exc
    except OSError as exc:
        raise PreconditionMissing(f"cannot read {path}: {exc.strerror or exc}") from exc
    from labctl import hypervisor

    vmx = hypervisor.driver().parse_vm_config(data)
    if not vmx.items():
        raise MalformedFile(f"{path} is not a .vmx file (it has no key = \"value\" lines)")
    return vmx


def _looks_like_path(arg: str) -> bool:
    lower = arg.lower().rstrip("/")
    return lower.endswith((".vmx", ".vmwarevm")) or "/" in arg or os.sep in arg or arg.startswith("~")


def _vmx_in_bundle(bundle: Path) -> Path:
    found = sorted(bundle.glob("*.vmx"))
    if len(found) != 1:
        raise InvalidInput(f"{bundle} holds {len(found)} .vmx files, not one",
                           "pass the .vmx file itself")
    return found[0]


def _info(path: Path, source: str, paths: Paths, vmx: Vmx | None = None) -> VmInfo:
    vmx = vmx if vmx is not None else read_vmx(path)
    name = vmx.display_name
    store = machine_store(paths) / "machines"
    try:
        in_store = path.resolve().parent.parent == store.resolve()
    except OSError:
        in_store = False
    in_store = in_store or source == "docker-machine"
    return VmInfo(name=unescape(name) if name else path.stem, vmx_path=path, source=source,
                  vmx=vmx, in_machine_store=in_store, machine=path.parent.name if in_store else None)


def resolve_vm(arg: str, paths: Paths, runner: Any = None) -> VmInfo:
    """A VM given as a .vmx path (or .vmwarevm bundle), a docker-machine name, or a name that
    ``vmrun list`` shows (the .vmx file name without .vmx, or its displayName)."""
    arg = arg.strip()
    if not arg or "\0" in arg:
        raise InvalidInput("empty VM name: give a .vmx path, a docker-machine name or a running VM's name")
    if _looks_like_path(arg):
        path = Path(arg).expanduser()
        if path.is_dir() and path.suffix.lower() == ".vmwarevm":
            path = _vmx_in_bundle(path)
        elif not path.exists():
            raise InvalidInput(f"no such .vmx file: {path}")
        return _info(path, "path", paths)

    store = machine_store(paths)
    machine_dir = store / "machines" / arg
    candidate = machine_dir / f"{arg}.vmx"
    if candidate.is_file():
        return _info(candidate, "docker-machine", paths)
    if machine_dir.is_dir():
        raise InvalidInput(f"docker-machine machine {arg!r} has no {arg}.vmx in {machine_dir}: "
                           "it does not run on VMware")

    try:
        running = paths.hypervisor.running_vms(runner)
    except PreconditionMissing as exc:
        raise PreconditionMissing(
            f"no VM {arg!r}: not a .vmx path, no docker-machine machine in {store}, "
            f"and vmrun is not there to list running VMs ({exc.message})",
            "pass the VM's .vmx path") from exc
    normalize = paths.hypervisor.same_vm_path
    want = normalize(arg)
    matches: list[VmInfo] = []
    for line in running:
        path = Path(line)
        by_file = normalize(path.stem) == want
        vmx = None
        if not by_file:
            try:
                vmx = read_vmx(path)
            except (InvalidInput, PreconditionMissing):
                continue
            shown = vmx.display_name
            if not shown or normalize(unescape(shown)) != want:
                continue
        matches.append(_info(path, "vmrun list", paths, vmx))
    if len(matches) > 1:
        raise InvalidInput(f"{arg!r} matches {len(matches)} running VMs: "
                           + ", ".join(str(m.vmx_path) for m in matches),
                           "pass the .vmx path")
    if not matches:
        listed = f"{len(running)} running VM{'s' if len(running) != 1 else ''}"
        raise InvalidInput(
            f"no VM {arg!r}: not a .vmx path, no docker-machine machine in {store}, "
            f"and not among the {listed} that vmrun lists",
            "pass the VM's .vmx path (a stopped VM is not in vmrun list)")
    return matches[0]


# ---- what runs in the VM ------------------------------------------------------------------------
_PHOTON_TAIL = re.compile(
    r"^(?:[\s_.\-]*(?:os|ova|hw\d+|vm|minimal|lite|rt|v))*[\s_.\-]*([1-5])(?:\.\d+)*(?![0-9])",
    re.IGNORECASE)
_DISTRO_VERSION = re.compile(r"distroVersion\s*=\s*(?:'|\"|\|27|\|22)?(\d+)", re.IGNORECASE)


def _clues(vm: VmInfo) -> list[tuple[str, str]]:
    """(where, text) pairs that may name the OS, most trustworthy first."""
    out: list[tuple[str, str]] = []
    for key in ("guestOS.detailed.data", "guestInfo.detailed.data"):
        value = vm.vmx.get(key)
        if value:
            out.append((key, unescape(value)))
    if vm.display_name:
        out.append(("displayName", vm.display_name))
    annotation = vm.vmx.get("annotation")
    if annotation:
        out.append(("annotation", unescape(annotation)))
    out.append(("the .vmx file name", vm.vmx_path.name))
    for key, value in vm.vmx.items().items():
        if key.lower().endswith(".filename") and value:
            out.append((key, unescape(value).replace("\\", "/").rsplit("/", 1)[-1]))
    return out


def photon_version(vm: VmInfo) -> tuple[int | None, str]:
    """The Photon OS major version and where it was read, or (None, why not).  VMware's
    guestOS (``vmware-photon-64``) never says the version: VMware Tools' detailed data and
    names such as ``photon-hw15-5.0-dde71ec57`` do."""
    for where, text in _clues(vm):
        if where.endswith("detailed.data") and "photon" in text.lower():
            m = _DISTRO_VERSION.search(text)
            if m and int(m.group(1)) in PHOTON_VERSIONS:
                return int(m.group(1)), f"{where} ({text})"
        lower = text.lower()
        start = 0
        while (i := lower.find("photon", start)) >= 0:
            m = _PHOTON_TAIL.match(text[i + len("photon"):])
            if m:
                return int(m.group(1)), f"{where} {text!r}"
            start = i + 1
    return None, f"guestOS {vm.guest_os!r} does not say which Photon OS version"


def _is_boot2docker(vm: VmInfo) -> bool:
    for key, value in vm.vmx.items().items():
        name = value.replace("\\", "/").rsplit("/", 1)[-1].lower()
        if key.lower().endswith(".filename") and name == "boot2docker.iso":
            return True
    guest = vm.guest_os.lower()
    # docker-machine's Fusion driver writes guestOS "other3xlinux-64" and keeps the VM in its store
    return vm.in_machine_store and guest.startswith("other") and "linux" in guest


def guest_kind(vm: VmInfo) -> str:
    """photon | flatcar | coreos | coreos-or-flatcar | boot2docker; anything else is an
    unsupported guest (InvalidInput)."""
    guest = vm.guest_os.lower()
    words = " ".join(text for _, text in _clues(vm)).lower()
    if "photon" in guest:
        return "photon"
    if _is_boot2docker(vm):
        return "boot2docker"
    if re.search(r"fedora[\s_-]*coreos|\bfcos\b|rhcos", words):
        raise InvalidInput(
            f"{vm.name} looks like Fedora CoreOS / RHCOS (guestOS {vm.guest_os or 'unset'}): "
            "they have no autologin boot argument and labctl has no console guide for them",
            "use the distribution's own recovery procedure")
    if "flatcar" in words:
        return "flatcar"
    if "coreos" in words:
        return "coreos"
    if guest.startswith("coreos"):
        return "coreos-or-flatcar"
    if "photon" in words:
        return "photon"
    raise InvalidInput(
        f"no console guide for {vm.name}: its guestOS is {vm.guest_os or 'not set'!r} "
        f"({vm.vmx_path}); labctl has guides for Photon OS, Flatcar/CoreOS and boot2docker")


# ---- the guides ---------------------------------------------------------------------------------
def _context(paths: Paths, vm: VmInfo | None) -> dict[str, Any]:
    import shlex

    return {
        "mac": paths.platform == "darwin",
        "product": paths.hypervisor.product,
        "vm_name": vm.name if vm else None,
        "vmx": str(vm.vmx_path) if vm else None,
        "vmx_q": shlex.quote(str(vm.vmx_path)) if vm else None,  # for commands to paste
        "vmrun": shlex.quote(str(paths.hypervisor.vmrun)),
    }


def photon_guide(paths: Paths, vm: VmInfo | None, photon: int | None) -> Guide:
    notes: list[str] = []
    if vm is not None and "photon" not in vm.guest_os.lower():
        kind = None
        try:
            kind = guest_kind(vm)
        except InvalidInput:
            kind = None
        if kind != "photon" and photon is None:
            raise InvalidInput(
                f"{vm.name} is not a Photon OS VM (guestOS {vm.guest_os or 'not set'!r})",
                f"run `labctl console-help {vm.name}`, or pass --photon N if it is Photon OS")
        if kind != "photon":
            notes.append(f"{vm.name}'s guestOS is {vm.guest_os or 'not set'!r}, not Photon OS: "
                         f"following --photon {photon} as asked.")
    if photon is not None and vm is not None:
        found, where = photon_version(vm)
        if found is not None and found != photon:
            notes.append(f"{where} suggests Photon OS {found}; showing Photon OS {photon} "
                         "as --photon asked.")
    if photon is None:
        found, where = photon_version(vm) if vm is not None else (None, "no VM was named")
        if found is not None:
            photon = found
            notes.append(f"Photon OS {photon}, read from {where}; pass --photon N if that is wrong.")
        else:
            photon = NEWEST_PHOTON
            notes.append(f"The Photon OS version is not known ({where}): these are the steps for "
                         f"Photon OS {photon}, the newest. Pass --photon 1|2|3|4|5 for another; "
                         "the steps differ only in unlocking root (Photon 3: pam_tally2, 4 and 5: faillock).")
    if photon not in PHOTON_VERSIONS:
        raise InvalidInput(f"--photon must be one of {', '.join(map(str, PHOTON_VERSIONS))}, not {photon}")
    guide = build("guides/photon-reset-password.j2", "photon", photon=photon, **_context(paths, vm))
    guide.notes[:0] = notes
    guide.vm = vm
    return guide


def console_guide(paths: Paths, vm: VmInfo) -> Guide:
    kind = guest_kind(vm)
    if kind == "photon":
        return photon_guide(paths, vm, None)
    if kind == "boot2docker":
        guide = build("guides/boot2docker-console.j2", "boot2docker",
                      machine=vm.machine, **_context(paths, vm))
    else:
        variant = {"flatcar": "flatcar", "coreos": "coreos"}.get(kind, "either")
        guide = build("guides/coreos-console.j2", "coreos", variant=variant, **_context(paths, vm))
    guide.vm = vm
    return guide


def open_console_plan(paths: Paths, vm: VmInfo, running: list[str] | None = None) -> Any:
    """A Plan with one Run: ``vmrun start VMX gui``."""
    from labctl.plan import Plan, Run

    plan = Plan(title=f"open the console of {vm.name}")
    plan.add(Run([paths.hypervisor.start_command(vm.vmx_path)],
                 description=f"start {vm.name} with its console window"))
    if running is not None and str(vm.vmx_path) in running:
        plan.notes.append(f"{vm.name} is already running: if no console window appears, open it "
                          f"from the {paths.hypervisor.product} virtual machine library")
    return plan

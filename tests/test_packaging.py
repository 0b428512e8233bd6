"""The distribution as users install it: every import declared (and nothing declared that
is not imported), the floors pinned in constraints-lowest.txt for CI's lowest-versions run,
and the wheel and sdist carrying the licence, the templates and the JSON schemas."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.version import Version

from tests.conftest import REPO, document

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements() -> dict[str, str]:
    """{normalized name: floor} of the runtime dependencies (each must have a >= floor)."""
    out = {}
    for req in PROJECT["dependencies"]:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)>=([0-9][0-9.]*)", req.replace(" ", ""))
        assert m, f"dependency {req!r} needs exactly a '>=' floor"
        out[_norm(m.group(1))] = m.group(2)
    return out


def _imports() -> dict[str, list[str]]:
    """Top-level modules labctl imports (lazily too) that are not labctl's or the standard
    library's: {module: [file:line, ...]}."""
    found: dict[str, list[str]] = {}
    for path in sorted((REPO / "labctl").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "labctl" or top in sys.stdlib_module_names:
                    continue
                found.setdefault(top, []).append(f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def test_every_import_is_a_declared_dependency_and_every_dependency_is_used():
    declared = _requirements()
    providers = importlib.metadata.packages_distributions()
    used: set[str] = set()
    for module, where in _imports().items():
        dists = {_norm(d) for d in providers.get(module, [])}
        assert dists, f"{module} (imported at {where[0]}) is not installed"
        mine = dists & declared.keys()
        assert mine, f"{module} (imported at {', '.join(where[:3])}) comes from {sorted(dists)}, " \
                     "which pyproject.toml does not declare"
        used |= mine
    assert used == set(declared), f"declared but never imported: {sorted(set(declared) - used)}"


def test_constraints_pin_exactly_the_floors():
    pins = {}
    for line in (REPO / "constraints-lowest.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[_norm(name)] = Version(version.strip())
    assert pins == {name: Version(floor) for name, floor in _requirements().items()}


def test_ci_installs_the_lowest_versions():
    ci = (REPO / ".ci" / "run").read_text()
    assert "-c constraints-lowest.txt" in ci and "python3 -m venv" in ci


def test_metadata_name_licence_urls_classifiers():
    assert PROJECT["name"] == "labctl-vmware"  # "labctl" on PyPI is another project
    assert PROJECT["scripts"] == {"labctl": "labctl.cli:main"}
    assert PROJECT["license"] == "MIT" and PROJECT["license-files"] == ["LICENSE"]
    assert "MIT License" in (REPO / "LICENSE").read_text()
    assert PROJECT["urls"] and PROJECT["classifiers"]
    assert not any(c.startswith("License ::") for c in PROJECT["classifiers"])  # PEP 639


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    """An sdist, and a wheel built from that sdist (so the sdist must be complete)."""
    out = tmp_path_factory.mktemp("dist")
    try:
        import build  # noqa: F401
        import hatchling  # noqa: F401
    except ImportError:
        pytest.skip("python -m build and hatchling are needed (pip install -e '.[test]')")
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out)], cwd=REPO,
                   check=True, capture_output=True, timeout=300)
    return {"wheel": next(out.glob("labctl_vmware-*.whl")),
            "sdist": next(out.glob("labctl_vmware-*.tar.gz"))}


def test_wheel_carries_licence_templates_and_schemas(dists):
    names = zipfile.ZipFile(dists["wheel"]).namelist()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    assert "labctl/templates/vmware/dhcpd.conf.j2" in names
    # the hypervisor seam: the interface, the registry and VMware's folder behind it
    assert {"labctl/hypervisor/__init__.py", "labctl/hypervisor/base.py",
            "labctl/hypervisor/vmware/driver.py", "labctl/hypervisor/vmware/dhcpd.py",
            "labctl/hypervisor/vmware/nic.py"} <= set(names)
    meta = zipfile.ZipFile(dists["wheel"]).read(
        next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "Name: labctl-vmware" in meta and "License-Expression: MIT" in meta
    assert "Project-URL: Homepage," in meta


def test_sdist_carries_licence_and_what_ci_needs(dists):
    with tarfile.open(dists["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for needed in ("LICENSE", "README.md", "constraints-lowest.txt", ".ci/run", "pyproject.toml",
                   "templates/vmware/dhcpd.conf.j2", "scripts/demo", "tests/test_cli.py"):
        assert needed in names, needed


def test_templates_render_from_installed_wheel(dists, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True,
                   timeout=120)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall",
                    "--no-index", str(dists["wheel"])], check=True, capture_output=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",) and not k.startswith("LABCTL_")}
    where = subprocess.run([str(py), "-c", "import labctl.render as r; print(r.templates_dir())"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert str(venv) in where.stdout and where.stdout.strip().endswith("labctl/templates")
    proc = subprocess.run([str(venv / "bin" / "labctl"), "photon", "reset-password", "--photon", "3",
                           "--format", "json"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr

    steps = document(proc.stdout, "guide")["steps"]
    assert any("`pam_tally2 --reset --user root`" in s["do"] for s in steps)
    assert not any("faillock" in s["do"] for s in steps)


def test_every_environment_variable_labctl_reads_is_in_the_readme():
    pattern = re.compile(r"""(?:environ|env|values)(?:\.get\(|\[)\s*["']([A-Z][A-Z0-9_]+)["']""")
    named = set()
    for path in (REPO / "labctl").rglob("*.py"):
        text = path.read_text()
        named |= set(pattern.findall(text)) | set(re.findall(r"\bLABCTL_[A-Z_]+\b", text))
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Environment variables"):]
    section = section[:section.index("\n## ", 1)]
    missing = sorted(v for v in named if f"`{v}" not in section)
    assert not missing, f"not in the README's environment table: {missing}"
    assert {"LABCTL_ROOT", "DOCKER_HOST", "MACHINE_STORAGE_PATH"} <= named  # the scan works


def test_example_lab_toml_is_valid_and_shipped(dists):
    from labctl import labspec

    for platform in ("darwin", "linux"):
        spec = labspec.load(REPO / "examples" / "lab.toml", platform)
        assert [m.name for m in spec.machines] == ["lab", "lab2"]
    assert "labctl/examples/lab.toml" in zipfile.ZipFile(dists["wheel"]).namelist()
    with tarfile.open(dists["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {"examples/lab.toml", "CHANGELOG.md"} <= names

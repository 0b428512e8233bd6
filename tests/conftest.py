"""Shared test helpers: where the reference samples live, and a LABCTL_ROOT sandbox."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO.parent / "shared" / "fixtures"
IN_CI = os.environ.get("CI", "").lower() == "true"


def fixtures_dir(*parts: str) -> Path:
    """The genuine samples in ../shared/fixtures (read in place, never copied).
    Required in CI; elsewhere their tests skip with the reason."""
    path = FIXTURES.joinpath(*parts)
    if not path.exists():
        if IN_CI:
            pytest.fail(f"{path} is missing: CI must have ../shared beside the checkout")
        pytest.skip(f"reference samples not found at {path} (clone with ../shared beside it)")
    return path


def fixture_files(subdir: str, contains: str = "") -> list[Path]:
    d = FIXTURES / subdir
    if not d.exists():
        return []
    return sorted(p for p in d.iterdir() if p.is_file() and contains in p.name)


@pytest.fixture
def fusion_root(tmp_path, monkeypatch):
    """A LABCTL_ROOT with a Fusion layout: networking with vmnet1 + vmnet8 and their dhcpd.conf."""
    root = tmp_path / "root"
    prefs = root / "Library/Preferences/VMware Fusion"
    fx = fixtures_dir("fusion")
    (prefs / "vmnet1").mkdir(parents=True)
    (prefs / "vmnet8").mkdir(parents=True)
    shutil.copy(fx / "networking.clean.from-sirn-vagrant-vmware-networking-logs", prefs / "networking")
    shutil.copy(fx / "vmnet1-dhcpd.conf.from-sirn-vagrant-vmware-networking-logs",
                prefs / "vmnet1/dhcpd.conf")
    shutil.copy(fx / "vmnet8-dhcpd.conf.from-sirn-vagrant-vmware-networking-logs",
                prefs / "vmnet8/dhcpd.conf")
    monkeypatch.setenv("LABCTL_ROOT", str(root))
    monkeypatch.setenv("LABCTL_PLATFORM", "darwin")
    monkeypatch.delenv("LABCTL_STATE_DIR", raising=False)
    return root


def document(text: str, name: str) -> dict:
    """A --json document: parsed, checked against labctl's shipped schema ``name``
    (labctl/schemas/NAME.json, with jsonschema when it is installed), and returned whole."""
    import json

    from labctl.documents import SCHEMA_VERSION, schema

    data = json.loads(text)
    assert isinstance(data, dict), f"a --json document must be an object, not {type(data).__name__}"
    assert data.get("schema") == name and data.get("schema_version") == SCHEMA_VERSION, \
        {k: data.get(k) for k in ("schema", "schema_version")}
    try:
        import jsonschema
    except ImportError:
        if IN_CI:
            pytest.fail("jsonschema is missing: CI validates every document")
        return data
    jsonschema.validate(data, schema(name), format_checker=jsonschema.FormatChecker())
    return data


def one_error(stderr: str) -> str:
    """labctl's error output in a pipe: ``labctl: error: MESSAGE`` and, when there is one,
    ``  fix: REMEDY`` on the next line; before them only the ✗ line of a step that failed.
    Returned as one line, ``labctl: error: MESSAGE (fix: REMEDY)``, for substring checks."""
    lines = stderr.rstrip("\n").split("\n")
    if lines and lines[0].startswith(("✗ ", "[xx] ")):  # the step that failed, and whether to re-run
        assert lines[1].startswith("  re-running is "), stderr
        lines = lines[2:]
    assert lines[0].startswith("labctl: error: "), stderr
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("  fix: ")), stderr
    assert "Traceback" not in stderr
    return lines[0] + (f" (fix: {lines[1][len('  fix: '):]})" if len(lines) == 2 else "")

"""Converger behaviour that needs no lab: asking before a networking restart."""

from __future__ import annotations

import pytest

from labctl.converge import Converger
from labctl.errors import LabctlError
from labctl.machine import DockerMachine
from labctl.paths import Paths
from labctl.plan import Command, Plan, Run
from labctl.runner import Runner


def _converger(tmp_path, monkeypatch, answer):
    monkeypatch.setenv("LABCTL_ROOT", str(tmp_path))
    monkeypatch.setenv("LABCTL_PLATFORM", "linux")
    paths = Paths.detect()
    runner = Runner()
    asked: list[str] = []

    def confirm(question: str) -> bool:
        asked.append(question)
        return answer

    conv = Converger(paths, runner, DockerMachine(runner, "docker-machine", tmp_path / "store"),
                     say=lambda s: None, confirm=confirm)
    return conv, asked


def _restart_plan(tmp_path):
    marker = tmp_path / "ran"
    plan = Plan("reserve lab")
    plan.add(Run([Command(["sh", "-c", f"touch {marker}", "--stop"])], description="restart"))
    return plan, marker


def test_declined_restart_changes_nothing(tmp_path, monkeypatch):
    conv, asked = _converger(tmp_path, monkeypatch, answer=False)
    plan, marker = _restart_plan(tmp_path)
    with pytest.raises(LabctlError, match="stopped before restarting"):
        conv.do(plan)
    assert asked and "restarts VMware Workstation networking" in asked[0]
    assert not marker.exists()


def test_accepted_restart_runs(tmp_path, monkeypatch):
    conv, asked = _converger(tmp_path, monkeypatch, answer=True)
    plan, marker = _restart_plan(tmp_path)
    conv.do(plan)
    assert asked and marker.exists()


def test_plans_without_restart_are_not_asked_about(tmp_path, monkeypatch):
    conv, asked = _converger(tmp_path, monkeypatch, answer=False)
    marker = tmp_path / "ran"
    conv.do(Plan("x", [Run([Command(["touch", str(marker)])])]))
    assert marker.exists() and asked == []

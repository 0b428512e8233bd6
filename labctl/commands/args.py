"""Argument checks run by typer as it parses (before a command does anything); labctl.validate
is imported only when one runs, so `labctl --help` stays as quick as typer."""

from __future__ import annotations


def machine(value: str | None) -> str | None:
    from labctl.validate import machine_arg

    return machine_arg(value)


def reservation(value: str | None) -> str | None:
    from labctl.validate import reservation_arg

    return reservation_arg(value)


def vmnet(value: str | None) -> str | None:
    from labctl.validate import vmnet_arg

    return vmnet_arg(value)

"""Templates from ``templates/``: in a checkout they sit beside the package, in an installed
wheel inside it (``labctl/templates``).  jinja2 is imported only when something renders."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any


def templates_dir() -> Path:
    here = Path(__file__).resolve().parent
    packaged = here / "templates"
    if packaged.is_dir():
        return packaged
    checkout = here.parent / "templates"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError("labctl's templates are missing from this installation")


@cache
def _env() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render(name: str, **context: Any) -> str:
    return _env().get_template(name).render(**context)

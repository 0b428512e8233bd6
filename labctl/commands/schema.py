"""labctl schema: the JSON schemas of labctl's --json documents (shipped in the package)."""

from __future__ import annotations

import typer

from labctl.commands.params import complete_schema


def schema(
    name: str = typer.Argument(None, metavar="NAME", autocompletion=complete_schema,
                               help="A document: vmnets, reservations, routes, doctor, checks, up, "
                               "status, guide or plan (default: list them)."),
) -> None:
    """Print the JSON schema of a --json document (draft 2020-12).

    Every --json document is an object with "schema" (its name) and "schema_version".

    Example: labctl schema doctor > doctor.schema.json
    """
    import sys

    from labctl import documents

    if name is None:
        width = max(len(n) for n in documents.NAMES)
        for n, where in documents.NAMES.items():
            sys.stdout.write(f"{n:<{width}}  {where}\n")
        return
    sys.stdout.write(documents.schema_text(name))

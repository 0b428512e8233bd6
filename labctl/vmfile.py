"""Shell text that replaces one file inside the VM atomically (run over ``docker-machine ssh``).

Shared by the planners that edit VM files (``vmpath``, ``engineconf``, ``vmcerts``); it imports
nothing of labctl, so any of them can use it without an import cycle.  Every path and the content
go through ``shlex.quote``: nothing reaches the VM's shell unquoted.
"""

from __future__ import annotations

import shlex


def replace_cmd(path: str, content: str | None, mode: str | None = None) -> str:
    """Shell that replaces ``path`` with ``content`` (None: removes it): written to a temporary
    file beside it, then renamed over it.  The new file keeps the old one's mode and owner
    (``cp -p`` first), or, with ``mode`` (octal, e.g. ``"644"``), gets that mode."""
    target = shlex.quote(path)
    if content is None:
        return f"rm -f {target}"
    tmp = shlex.quote(f"{path}.labctl-tmp")
    mkdir = f"mkdir -p {shlex.quote(path.rsplit('/', 1)[0])}"
    fill = f"printf %s {shlex.quote(content)} > {tmp}"
    if mode is None:
        return f"{mkdir} && {{ cp -p {target} {tmp} 2>/dev/null; {fill}; }} && mv -f {tmp} {target}"
    return f"{mkdir} && {fill} && chmod {shlex.quote(mode)} {tmp} && mv -f {tmp} {target}"

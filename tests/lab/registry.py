"""A tiny TLS "registry" for lab tests: answers the Registry API v2 ping (``GET /v2/`` -> 200
with ``Docker-Distribution-API-Version: registry/2.0``) and ``manifest unknown`` (404) for
everything else.  Enough for ``docker pull`` to show whether the engine trusted the TLS
certificate: untrusted -> ``x509: certificate signed by unknown authority``; trusted -> the
registry's ``manifest unknown``.  Started inside a namespace the test made, on an address there.

    python3 registry.py ADDRESS PORT CERT KEY
"""

from __future__ import annotations

import http.server
import json
import ssl
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.rstrip("/") == "/v2":
            self._send(200, {})
        else:
            self._send(404, {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown",
                                         "detail": {}}]})

    do_HEAD = do_GET  # noqa: N815

    def log_message(self, fmt: str, *args: object) -> None:
        sys.stderr.write("registry: " + (fmt % args) + "\n")


def main(argv: list[str]) -> None:
    address, port, cert, key = argv
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server = http.server.ThreadingHTTPServer((address, int(port)), Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    sys.stderr.write(f"registry: listening on {address}:{port}\n")
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])

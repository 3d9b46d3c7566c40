"""A Koji hub for the end-to-end test: koji's own WSGI application (kojihub.kojixmlrpc)
served by wsgiref on loopback, plus the topdir as static files (kojid's topurl).

Usage: hub.py CONFIG TOPDIR PORT_FILE   (koji's source tree on PYTHONPATH)
The port it listens on is written to PORT_FILE once it accepts connections.
"""

from __future__ import annotations

import io
import mimetypes
import os
import sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from kojihub.kojixmlrpc import application as hub_application


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write("hub: " + (format % args) + "\n")


def make_app(config: str, topdir: str):
    def files(environ, start_response):
        rel = os.path.normpath(environ["PATH_INFO"][len("/kojifiles") :].lstrip("/"))
        path = os.path.join(topdir, rel)
        if rel.startswith("..") or not os.path.isfile(path):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"Not Found\n"]
        size = os.path.getsize(path)
        ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
        start_response("200 OK", [("Content-Type", ctype), ("Content-Length", str(size))])
        with open(path, "rb") as handle:
            return [handle.read()]

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        while "//" in path:  # as Apache's MergeSlashes does: kojid sends topurl + '//repos/...'
            path = path.replace("//", "/")
        environ["PATH_INFO"] = path
        if path.startswith("/kojifiles/"):
            return files(environ, start_response)
        if path.startswith("/kojihub"):
            # the hub reads its input to EOF, as mod_wsgi delivers it; wsgiref hands over the
            # raw keep-alive socket, so give it exactly the request body
            length = int(environ.get("CONTENT_LENGTH") or 0)
            environ["wsgi.input"] = io.BytesIO(environ["wsgi.input"].read(length))
            environ["koji.hub.ConfigFile"] = config
            environ["koji.hub.ConfigDir"] = os.path.join(os.path.dirname(config), "hub.conf.d")
            return hub_application(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not Found\n"]

    return app


def main() -> None:
    config, topdir, port_file = sys.argv[1:4]
    server = make_server(
        "127.0.0.1", 0, make_app(config, topdir), ThreadingWSGIServer, QuietHandler
    )
    with open(port_file + ".tmp", "w") as handle:
        handle.write(str(server.server_address[1]))
    os.replace(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()

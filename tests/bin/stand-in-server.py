"""A light stand-in for jupyterhub-singleuser in operator tests: serves HTTP on the port given
by JUPYTERHUB_SERVICE_URL (like the real one) until it is stopped."""

import os
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"stand-in for {os.environ.get('JUPYTERHUB_USER')} as uid {os.getuid()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


url = urllib.parse.urlsplit(os.environ["JUPYTERHUB_SERVICE_URL"])
ThreadingHTTPServer((url.hostname or "0.0.0.0", url.port or 0), Hello).serve_forever()

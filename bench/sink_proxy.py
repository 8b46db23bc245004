"""A reverse proxy in front of the reference server that swallows output uploads.

The reference server keeps outputs as SQLite blobs and reads each upload into memory:
it cannot hold a 1 GiB output (SQLite's limit is 1,000,000,000 bytes). The upload
bench therefore points the agent (and curl) at this proxy: every request is passed to
the reference server as it is, except ``POST /v1/jobs/{pk}/outputs/{name}/{type}``,
whose body is read and discarded here (timed from the request line to the last byte),
and then passed on with a 4-byte body so the server records the output and answers as
usual. One JSON line per swallowed upload on stdout: ``{"path", "bytes", "start",
"end"}`` (epoch seconds). The first stdout line is ``listening on URL``.

    python -m bench.sink_proxy UPSTREAM_URL
"""

from __future__ import annotations

import http.client
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

OUTPUT = re.compile(r"^/v1/jobs/\d+/outputs/[^/]+/[^/]+$")
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}
CHUNK = 1 << 20
_print_lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream: tuple[str, int] = ("127.0.0.1", 0)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    _conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(*self.upstream, timeout=120)
        return self._conn

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _swallow(self) -> int:
        """Read and discard the body; its length."""
        total = 0
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return len(self._body())
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            got = self.rfile.readinto(view[: min(CHUNK, remaining)])
            if not got:
                break
            total += got
            remaining -= got
        return total

    def _handle(self) -> None:
        start = time.time()
        if self.command == "POST" and OUTPUT.match(self.path.split("?", 1)[0]):
            size = self._swallow()
            end = time.time()
            with _print_lock:
                record = {"path": self.path, "bytes": size, "start": start, "end": end}
                print(json.dumps(record), flush=True)
            body = b"sink"
        else:
            body = self._body()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        headers["Content-Length"] = str(len(body))
        for attempt in range(2):  # a kept-alive upstream connection may have been closed
            conn = self._connection()
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                reply = conn.getresponse()
                data = reply.read()
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                self._conn = None
                if attempt:
                    raise
        self.send_response(reply.status, reply.reason)
        for key, value in reply.getheaders():
            if key.lower() not in HOP:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


def main() -> int:
    target = urlsplit(sys.argv[1])
    Handler.upstream = (target.hostname or "127.0.0.1", target.port or 80)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"listening on http://127.0.0.1:{server.server_port}", flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()  # until the bench closes our stdin
    server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

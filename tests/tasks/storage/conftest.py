"""Fixtures for the S3 store tests: a real S3-protocol server on loopback, and a fault proxy.

moto's ``ThreadedMotoServer`` runs in this process; its state (buckets, objects) is a
module-global backend shared by every server instance, which is what lets the fault test stop
a server and start a new one on the same port with the data still there. Tests isolate
themselves with a fresh bucket each instead of resetting that shared state.
"""

from __future__ import annotations

import http.client
import itertools
import logging
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log (412s in red) is noise

# Fast retries: a test that exercises the retry path must not sleep for seconds.
FAST = {"retries": 2, "retry_delay": 0.01, "retry_max_delay": 0.05, "connect_timeout": 2.0, "read_timeout": 15.0}
_counter = itertools.count()


def unique_bucket(tag: str = "t") -> str:
    return f"l360-{tag}-{next(_counter)}-{uuid.uuid4().hex[:8]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class MotoEndpoint:
    server: object
    host: str
    port: int

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"


def start_moto(port: int = 0) -> MotoEndpoint:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, real_port = server.get_host_and_port()
    return MotoEndpoint(server, host, real_port)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoEndpoint]:
    ep = start_moto()
    yield ep
    ep.server.stop()


@pytest.fixture
def make_s3(moto_server) -> Callable[..., object]:
    """``make_s3(bucket=None, endpoint=None, **options)``: an S3Store on the loopback server."""
    from tasks.storage.s3 import S3Store

    def make(bucket: str | None = None, *, endpoint: str | None = None, **options):
        settings = {"access_key": "testing", "secret_key": "testing", "secure": False,
                    "create_bucket": True, **FAST, **options}
        return S3Store(bucket or unique_bucket(), endpoint=endpoint or moto_server.endpoint, **settings)

    return make


class FaultProxy:
    """An HTTP forwarder in front of the S3 server that can fail, alter or cut requests.

    * ``fail_next = n``: answer the next n requests with ``fail_status`` (an S3 XML error);
    * ``strip_headers``: request headers not forwarded (a server that ignores them);
    * ``drop_after_forward = n``: forward the next n PUTs, then close the connection without
      answering (the write landed, the response was lost).
    """

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.fail_next = 0
        self.fail_status = 503
        self.strip_headers: set[str] = set()
        self.drop_after_forward = 0
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                with proxy._lock:
                    proxy.requests.append((self.command, self.path))
                    fail = proxy.fail_next > 0
                    if fail:
                        proxy.fail_next -= 1
                    drop = self.command == "PUT" and proxy.drop_after_forward > 0
                    if drop:
                        proxy.drop_after_forward -= 1
                if fail:
                    xml = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
                           b"<Message>injected fault</Message></Error>")
                    self.send_response(proxy.fail_status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(xml)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(xml)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in proxy.strip_headers}
                conn = http.client.HTTPConnection(proxy.upstream, timeout=15)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                if drop:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fault_proxy(moto_server) -> Iterator[FaultProxy]:
    from tasks.storage import s3

    proxy = FaultProxy(moto_server.endpoint)
    yield proxy
    proxy.close()
    s3._NATIVE_CONDITIONAL.clear()  # a later proxy may get this port with other faults

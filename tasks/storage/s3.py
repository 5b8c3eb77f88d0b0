"""The MinIO/S3 object store of the production deployment (the ``minio`` client, 7.2.x).

Why it looks the way it does:

* **Atomicity.** A single S3 PUT (and a completed multipart upload) is atomic: readers see the
  old object, the new one, or nothing. That is all the stage contract needs — the runner writes
  a stage's payload first and its ``_MANIFEST.json`` last, so an interrupted stage leaves
  objects nobody resolves (no manifest points at them) and the next attempt deletes them.
* **Integrity.** Every upload carries the SHA-256 of its content as user metadata
  (``x-amz-meta-sha256``); every download through :meth:`get_bytes` / :meth:`get_file` verifies
  it when present and raises :class:`ChecksumMismatch` otherwise. Objects written by other
  tools (uploads under ``raw/``) have no such metadata and are read unverified.
* **Transient failures** (connection refused or reset, timeouts, HTTP 5xx, ``SlowDown``) are
  retried a bounded number of times with jittered exponential backoff, each attempt from the
  start (a PUT body is re-read, a listing resumes after the last key it returned). Then a
  :class:`~tasks.errors.StoreError` names the endpoint, bucket and key, so Airflow retries the
  task and the person on call knows where to look. urllib3's own retries are switched off so
  there is exactly one, configurable, retry policy.
* **Permanent failures** are typed: wrong credentials or missing permission →
  :class:`S3AccessDenied`, missing bucket → :class:`BucketNotFound` (both
  :class:`~tasks.errors.ConfigError`, so they are not retried); a missing key →
  :class:`~tasks.errors.ObjectNotFound`.
* **Processes.** A ``Minio`` client is thread-safe but must not cross a ``fork``; it is created
  lazily and re-created when the process id changes (Airflow's forked task runners, worker
  pools).
* **Secrets** never appear in ``repr()``, log lines or error messages (the access key id is
  shown masked, the secret never).

``put_if_absent`` uses S3 conditional writes (``If-None-Match: *``), which AWS S3 and MinIO
evaluate atomically on the server, so exactly one concurrent writer wins. Servers that ignore
the header are detected once per store and handled by a check-write-verify emulation whose
weaker guarantee is documented on :meth:`S3Store.put_if_absent`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import certifi
import urllib3
from minio import Minio
from minio.commonconfig import CopySource
from minio.deleteobjects import DeleteObject
from minio.error import InvalidResponseError, S3Error, ServerError
from minio.helpers import check_bucket_name

from tasks.errors import ConfigError, ObjectNotFound, StoreError
from tasks.storage.base import ObjectInfo, ObjectStore, check_key

log = logging.getLogger(__name__)

T = TypeVar("T")

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB          # S3's smallest part (all but the last)
MAX_PART_SIZE = 5 * 1024 * MiB   # S3's largest part
DEFAULT_PART_SIZE = 16 * MiB     # objects above this are uploaded in parts of this size

SHA256_HEADER = "x-amz-meta-sha256"
WRITER_HEADER = "x-amz-meta-l360-writer"  # a per-call nonce, so put_if_absent knows its own write

# S3 error codes that say "try again later" even when the HTTP status is not 5xx.
_RETRY_CODES = frozenset({
    "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "OperationAborted",
    "ConditionalRequestConflict", "XMinioServerNotInitialized", "XMinioReadQuorum", "XMinioWriteQuorum",
})
_DENIED_CODES = frozenset({
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
    "AllAccessDisabled", "AccountProblem",
})

CONDITIONAL_MODES = ("auto", "native", "emulated")
_PROBE_DIR = ".l360-probe/"
# What the probe found, per (endpoint, bucket): one probe per process, not one per store object
# (the Airflow side builds a store per task).
_NATIVE_CONDITIONAL: dict[tuple[str, str], bool] = {}


class BucketNotFound(ConfigError):
    """The configured bucket does not exist and the store was not asked to create it."""


class S3AccessDenied(ConfigError):
    """The server rejected the credentials, or they lack permission for the bucket."""


class ChecksumMismatch(StoreError):
    """A downloaded object does not match the SHA-256 recorded when it was uploaded.

    Transient on purpose: the usual cause is a transfer cut short; a retry downloads it again.
    If it persists, the stored object was changed outside the pipeline or is damaged.
    """


class _Credentials:
    """Access key, secret and session token, kept out of ``repr()`` and ``vars()`` output."""

    __slots__ = ("access_key", "secret_key", "session_token")

    def __init__(self, access_key: str | None, secret_key: str | None, session_token: str | None):
        self.access_key = access_key or None
        self.secret_key = secret_key or None
        self.session_token = session_token or None

    def __repr__(self) -> str:
        return f"<credentials {self.masked_key}>"

    @property
    def masked_key(self) -> str:
        if not self.access_key:
            return "(anonymous)"
        return self.access_key[:4] + "…" if len(self.access_key) > 4 else "…"


# -- configuration helpers ---------------------------------------------------------------------
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse_bool(value: str | bool, what: str) -> bool:
    if isinstance(value, bool):
        return value
    v = str(value).strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ConfigError(f"{what} must be true or false (1/0, yes/no, on/off), not {value!r}")


def _parse_number(value: Any, what: str, kind: type, minimum: float) -> Any:
    try:
        n = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a {kind.__name__}, not {value!r}") from None
    if n < minimum:
        raise ConfigError(f"{what} must be at least {minimum}, not {value!r}")
    return n


def parse_endpoint(endpoint: str, secure: bool | None) -> tuple[str, bool]:
    """``host[:port]`` or ``http(s)://host[:port]`` → (``host:port``, secure).

    A scheme in the endpoint decides TLS unless ``secure`` says otherwise, which is a conflict
    worth stopping for (a silent downgrade to plain HTTP would send credentials in the clear).
    """
    ep = endpoint.strip()
    if not ep:
        raise ConfigError("the S3 endpoint is empty: give host:port, e.g. minio:9000")
    if "://" in ep:
        parts = urlsplit(ep)
        if parts.scheme not in ("http", "https"):
            raise ConfigError(f"S3 endpoint {endpoint!r} must use http:// or https://, or no scheme")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ConfigError(f"S3 endpoint {endpoint!r} must be host[:port] only, without a path")
        if parts.username or parts.password:
            raise ConfigError("the S3 endpoint must not contain credentials; set them in the environment")
        scheme_secure = parts.scheme == "https"
        if secure is not None and secure != scheme_secure:
            raise ConfigError(
                f"S3 endpoint {parts.scheme}://{parts.netloc} contradicts secure={secure}; drop one of them"
            )
        return parts.netloc, scheme_secure
    if "/" in ep or "@" in ep:
        raise ConfigError(f"S3 endpoint {endpoint!r} must be host[:port] only, without a path or credentials")
    return ep, True if secure is None else secure


# Settings read by from_url/from_env: name -> (URL query key or None, environment variables).
_ENV: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "endpoint": ("endpoint", ("LEADER360V_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")),
    "secure": ("secure", ("LEADER360V_S3_SECURE",)),
    "region": ("region", ("LEADER360V_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION")),
    "public_endpoint": ("public_endpoint", ("LEADER360V_S3_PUBLIC_ENDPOINT",)),
    "create_bucket": ("create", ("LEADER360V_S3_CREATE_BUCKET",)),
    "part_size": ("part_size", ("LEADER360V_S3_PART_SIZE",)),
    "retries": ("retries", ("LEADER360V_S3_RETRIES",)),
    "retry_delay": ("retry_delay", ("LEADER360V_S3_RETRY_DELAY",)),
    "conditional_writes": ("conditional_writes", ("LEADER360V_S3_CONDITIONAL_WRITES",)),
}
_QUERY_KEYS = {q: name for name, (q, _) in _ENV.items() if q}
_SECRET_QUERY_KEYS = {"access_key", "secret_key", "accesskey", "secretkey", "password", "token",
                      "session_token", "aws_access_key_id", "aws_secret_access_key"}


def _first_env(env: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for n in names:
        v = env.get(n)
        if v:
            return v
    return None


# -- the store -----------------------------------------------------------------------------------
class S3Store(ObjectStore):
    """Objects in one bucket of an S3-compatible server, optionally under a key prefix.

    Keys are relative to ``prefix`` (``s3://bucket/team-a/`` with key ``raw/x.mp4`` is the
    object ``team-a/raw/x.mp4``), so a store rooted in a shared bucket behaves exactly like one
    that owns it. Nothing touches the network until the first operation, so building a store in
    a DAG file or from an Airflow connection is free.
    """

    def __init__(
        self,
        bucket: str,
        *,
        endpoint: str,
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        secure: bool | None = None,
        region: str | None = None,
        prefix: str = "",
        create_bucket: bool = False,
        part_size: int = DEFAULT_PART_SIZE,
        parallel_uploads: int = 3,
        retries: int = 4,
        retry_delay: float = 0.5,
        retry_max_delay: float = 8.0,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        conditional_writes: str = "auto",
        public_endpoint: str | None = None,
        cert_check: bool = True,
    ):
        try:
            check_bucket_name(bucket, strict=True)
        except ValueError as exc:
            raise ConfigError(
                f"invalid bucket name {bucket!r}: 3-63 characters of a-z, 0-9, '-' and '.' ({exc})"
            ) from None
        if access_key and not secret_key:
            raise ConfigError(
                "an S3 access key was given without its secret key; set LEADER360V_S3_SECRET_KEY "
                "(or the connection's password)"
            )
        if secret_key and not access_key:
            raise ConfigError("an S3 secret key was given without its access key; set LEADER360V_S3_ACCESS_KEY")
        if not (MIN_PART_SIZE <= int(part_size) <= MAX_PART_SIZE):
            raise ConfigError(
                f"part_size {part_size} is outside S3's limits {MIN_PART_SIZE}..{MAX_PART_SIZE} bytes (5 MiB..5 GiB)"
            )
        if conditional_writes not in CONDITIONAL_MODES:
            raise ConfigError(
                f"conditional_writes must be one of {', '.join(CONDITIONAL_MODES)}, not {conditional_writes!r}"
            )
        if retries < 0 or retry_delay < 0 or retry_max_delay < 0:
            raise ConfigError("retries, retry_delay and retry_max_delay must not be negative")
        self.bucket = bucket
        self.endpoint, self.secure = parse_endpoint(endpoint, secure)
        self.public_endpoint = parse_endpoint(public_endpoint, None) if public_endpoint else None
        self.region = region or "us-east-1"  # a fixed region also saves a GetBucketLocation call
        self.prefix = self._normalize_prefix(prefix)
        self.create_bucket = bool(create_bucket)
        self.part_size = int(part_size)
        self.parallel_uploads = max(1, int(parallel_uploads))
        self.retries = int(retries)
        self.retry_delay = float(retry_delay)
        self.retry_max_delay = float(retry_max_delay)
        self.connect_timeout = float(connect_timeout)
        self.read_timeout = float(read_timeout)
        self.conditional_writes = conditional_writes
        self.cert_check = bool(cert_check)
        self._creds = _Credentials(access_key, secret_key, session_token)
        self._client_state: tuple[int, Minio] | None = None   # (pid, client)
        self._presign_state: tuple[int, Minio] | None = None
        self._bucket_ready_pid: int | None = None
        self._conditional_native: bool | None = None if conditional_writes == "auto" else (
            conditional_writes == "native")

    # -- construction from a URL and the environment ----------------------------------------
    @classmethod
    def from_url(cls, url: str, *, env: Mapping[str, str] | None = None, **overrides: Any) -> S3Store:
        """``s3://bucket[/prefix][?endpoint=host:port&secure=false&region=..&create=true]``.

        Precedence: keyword ``overrides`` > URL query > ``LEADER360V_S3_*`` > ``AWS_*``.
        Credentials are never read from the URL (URLs end up in logs and XCom); they come from
        ``access_key``/``secret_key`` overrides or the environment.
        """
        env = os.environ if env is None else env
        parts = urlsplit(url)
        if parts.scheme != "s3":
            raise ConfigError(f"{url!r} is not an s3:// URL")
        if "@" in parts.netloc:
            raise ConfigError(
                "the store URL must not contain credentials; set LEADER360V_S3_ACCESS_KEY and "
                "LEADER360V_S3_SECRET_KEY in the environment instead"
            )
        bucket = parts.netloc
        if not bucket:
            raise ConfigError(f"store URL {url!r} names no bucket: use s3://BUCKET[/prefix]")
        query: dict[str, str] = {}
        for k, v in parse_qsl(parts.query, keep_blank_values=True):
            key = k.lower()
            if key in _SECRET_QUERY_KEYS:
                raise ConfigError(
                    f"store URL carries {k!r}: credentials must not be put in URLs (they are logged); "
                    "set LEADER360V_S3_ACCESS_KEY / LEADER360V_S3_SECRET_KEY instead"
                )
            if key not in _QUERY_KEYS:
                raise ConfigError(
                    f"unknown option {k!r} in store URL; known: {', '.join(sorted(_QUERY_KEYS))}"
                )
            query[_QUERY_KEYS[key]] = v
        settings = cls._settings_from(env, query, overrides)
        settings.setdefault("prefix", parts.path.lstrip("/"))
        return cls(bucket, **settings)

    @classmethod
    def from_env(cls, bucket: str, *, env: Mapping[str, str] | None = None, **overrides: Any) -> S3Store:
        """A store for ``bucket`` configured from ``LEADER360V_S3_*`` (or ``AWS_*``) variables."""
        return cls(bucket, **cls._settings_from(os.environ if env is None else env, {}, overrides))

    @staticmethod
    def _settings_from(env: Mapping[str, str], query: dict[str, str], overrides: dict[str, Any]) -> dict:
        s: dict[str, Any] = {}
        for name, (_, env_names) in _ENV.items():
            if name in overrides:
                continue
            v = query.get(name)
            if v is None:
                v = _first_env(env, env_names)
            if v is None:
                continue
            if name in ("secure", "create_bucket"):
                s[name] = _parse_bool(v, f"S3 setting {name}")
            elif name in ("part_size", "retries"):
                s[name] = _parse_number(v, f"S3 setting {name}", int, 0)
            elif name == "retry_delay":
                s[name] = _parse_number(v, f"S3 setting {name}", float, 0)
            else:
                s[name] = v
        if "access_key" not in overrides and "secret_key" not in overrides:
            if env.get("LEADER360V_S3_ACCESS_KEY") or env.get("LEADER360V_S3_SECRET_KEY"):
                s["access_key"] = env.get("LEADER360V_S3_ACCESS_KEY")
                s["secret_key"] = env.get("LEADER360V_S3_SECRET_KEY")
                s["session_token"] = env.get("LEADER360V_S3_SESSION_TOKEN")
            elif env.get("AWS_ACCESS_KEY_ID") or env.get("AWS_SECRET_ACCESS_KEY"):
                # a session token belongs to the key it was issued with: only take AWS_'s with AWS_'s key
                s["access_key"] = env.get("AWS_ACCESS_KEY_ID")
                s["secret_key"] = env.get("AWS_SECRET_ACCESS_KEY")
                s["session_token"] = env.get("AWS_SESSION_TOKEN")
        s.update(overrides)
        if not s.get("endpoint"):
            raise ConfigError(
                "no S3 endpoint configured: add ?endpoint=HOST:PORT to the store URL or set "
                "LEADER360V_S3_ENDPOINT (e.g. minio:9000, or s3.amazonaws.com for AWS)"
            )
        return s

    @staticmethod
    def _normalize_prefix(prefix: str) -> str:
        p = (prefix or "").strip("/")
        if not p:
            return ""
        try:
            check_key(p)
        except ValueError as exc:
            raise ConfigError(f"invalid key prefix {prefix!r} for the store: {exc}") from None
        return p + "/"

    def __repr__(self) -> str:
        scheme = "https" if self.secure else "http"
        return f"S3Store({self.uri()!r}, endpoint={scheme}://{self.endpoint})"

    # Pickling (multiprocessing, spawn): ship the settings, never a live client.
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_client_state"] = None
        state["_presign_state"] = None
        state["_bucket_ready_pid"] = None
        return state

    # -- clients -------------------------------------------------------------------------------
    def _new_client(self, endpoint: str, secure: bool) -> Minio:
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=self.connect_timeout, read=self.read_timeout),
            maxsize=max(10, 2 * self.parallel_uploads),
            cert_reqs="CERT_REQUIRED" if self.cert_check else "CERT_NONE",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
            retries=False,  # one retry policy: ours (bounded, logged, with an actionable error)
        )
        return Minio(
            endpoint=endpoint,
            access_key=self._creds.access_key,
            secret_key=self._creds.secret_key,
            session_token=self._creds.session_token,
            secure=secure,
            region=self.region,
            http_client=http,
        )

    @property
    def client(self) -> Minio:
        """This process's ``Minio`` client (created on first use, again after a fork)."""
        pid = os.getpid()
        state = self._client_state
        if state is None or state[0] != pid:
            state = (pid, self._new_client(self.endpoint, self.secure))
            self._client_state = state  # a racing thread may build a second one; both work
        return state[1]

    def _presign_client(self) -> Minio:
        if self.public_endpoint is None:
            return self.client
        pid = os.getpid()
        state = self._presign_state
        if state is None or state[0] != pid:
            state = (pid, self._new_client(*self.public_endpoint))
            self._presign_state = state
        return state[1]

    def _full(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _rel(self, name: str) -> str:
        return name[len(self.prefix):]

    def _where(self, key: str | None) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key or ''} at {'https' if self.secure else 'http'}://{self.endpoint}"

    # -- bucket bootstrap ------------------------------------------------------------------------
    def ensure_bucket(self) -> None:
        """Check (once per process) that the bucket exists; create it if the store may.

        Every operation does this on first use; call it to fail early (or bootstrap) on purpose.
        """
        self._call("check bucket", None, lambda c: None)

    def _ready(self, client: Minio) -> Minio:
        """``client``, after the once-per-process bucket check (inside the caller's retry loop,
        so a failure there is reported with the object the caller was after)."""
        pid = os.getpid()
        if self._bucket_ready_pid != pid:
            self._check_bucket(client)
            self._bucket_ready_pid = pid
        return client

    def _check_bucket(self, client: Minio) -> None:
        # A listing under the store's prefix rather than HEAD bucket: it needs only the
        # s3:ListBucket permission the store needs anyway (prefix-scoped policies included), and
        # a GET's error has a body, so a wrong key is told apart from a missing permission.
        try:
            for _ in client.list_objects(bucket_name=self.bucket, prefix=f"{self.prefix}.l360-bucket-check/"):
                break
            return
        except S3Error as exc:
            if exc.code != "NoSuchBucket":
                raise
        if not self.create_bucket:
            raise self._no_bucket()
        try:
            client.make_bucket(bucket_name=self.bucket, location=self.region)
            log.info("created bucket %s at %s", self.bucket, self.endpoint)
        except S3Error as exc:
            if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise  # another process bootstrapped it at the same moment: fine

    def _no_bucket(self) -> BucketNotFound:
        return BucketNotFound(
            f"bucket {self.bucket!r} does not exist at {'https' if self.secure else 'http'}://{self.endpoint}; "
            f"create it (e.g. `mc mb ALIAS/{self.bucket}`), or let the pipeline create it with "
            "?create=true in the store URL / LEADER360V_S3_CREATE_BUCKET=1 / create_bucket=True"
        )

    # -- retries and error mapping -----------------------------------------------------------
    def _call(self, what: str, key: str | None, fn: Callable[[Minio], T]) -> T:
        """Run ``fn(client)`` under the retry policy; map failures to typed errors."""
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn(self._ready(self.client))
            except Exception as exc:  # noqa: BLE001 - classified below; unknown ones re-raised as-is
                self._handle(exc, what, key, attempt, started)

    def _handle(self, exc: Exception, what: str, key: str | None, attempt: int, started: float) -> None:
        """Return to retry (after sleeping), or raise the typed error for ``exc``."""
        reason = self._transient_reason(exc)
        if reason is None:
            mapped = self._permanent(exc, what, key)
            if mapped is exc:
                raise exc
            raise mapped from exc
        if attempt > self.retries:
            elapsed = time.monotonic() - started
            raise StoreError(
                f"cannot {what} {self._where(key)}: {reason}; gave up after {attempt} attempts in "
                f"{elapsed:.1f}s. Check that the object store is running and reachable from here "
                "(LEADER360V_S3_ENDPOINT or the connection's host); the task can be retried safely."
            ) from exc
        delay = min(self.retry_max_delay, self.retry_delay * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
        log.warning("S3 %s of %s failed (%s); retry %d/%d in %.2fs",
                    what, self._where(key), reason, attempt, self.retries, delay)
        time.sleep(delay)

    @staticmethod
    def _transient_reason(exc: Exception) -> str | None:
        if isinstance(exc, S3Error):
            status = exc.response.status if exc.response is not None else 0
            if exc.code in _RETRY_CODES or status >= 500:
                return f"server error {exc.code} (HTTP {status})"
            return None
        if isinstance(exc, ServerError):
            return f"server error HTTP {exc.status_code}" if exc.status_code >= 500 else None
        if isinstance(exc, InvalidResponseError):
            code = getattr(exc, "_code", 0) or 0
            return f"unexpected non-S3 response HTTP {code}" if code >= 500 else None
        if isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError):
            return f"network error: {type(exc).__name__}: {_short(exc)}"
        return None

    def _permanent(self, exc: Exception, what: str, key: str | None) -> Exception:
        if isinstance(exc, S3Error):
            if exc.code == "NoSuchBucket":
                self._bucket_ready_pid = None
                return self._no_bucket()
            if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                return ObjectNotFound(f"no object {key!r} in s3://{self.bucket}/{self.prefix}")
            status = exc.response.status if exc.response is not None else 0
            if exc.code in _DENIED_CODES or status == 403:
                return S3AccessDenied(
                    f"the S3 server refused to {what} {self._where(key)}: {exc.code} "
                    f"(access key {self._creds.masked_key}). InvalidAccessKeyId/SignatureDoesNotMatch "
                    "mean the access key or secret is wrong; AccessDenied means the key lacks permission "
                    f"on bucket {self.bucket!r}. Check LEADER360V_S3_ACCESS_KEY / LEADER360V_S3_SECRET_KEY "
                    "or the Airflow connection."
                )
            return StoreError(
                f"cannot {what} {self._where(key)}: S3 error {exc.code} (HTTP {status}): {exc.message}"
            )
        if isinstance(exc, ServerError | InvalidResponseError):
            return StoreError(f"cannot {what} {self._where(key)}: {_short(exc)}")
        return exc  # not a storage failure (a bug, a local file error): keep it as it is

    # -- primitives -------------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        full = self._full(key)
        digest = hashlib.sha256(data).hexdigest()

        def op(c: Minio) -> None:
            c.put_object(
                bucket_name=self.bucket, object_name=full, data=io.BytesIO(data), length=len(data),
                content_type=content_type or "application/octet-stream", metadata={"sha256": digest},
                part_size=self.part_size, num_parallel_uploads=self.parallel_uploads,
            )

        self._call("write", key, op)

    def put_file(self, key: str, path: str | Path, *, content_type: str | None = None) -> None:
        """Upload a file; above ``part_size`` it goes up in parts (one atomic object at the end)."""
        full = self._full(key)
        path = Path(path)
        h = hashlib.sha256()
        size = 0
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(MiB), b""):
                h.update(chunk)
                size += len(chunk)
        digest = h.hexdigest()

        def op(c: Minio) -> None:
            with open(path, "rb") as fh:
                c.put_object(
                    bucket_name=self.bucket, object_name=full, data=fh, length=size,
                    content_type=content_type or "application/octet-stream", metadata={"sha256": digest},
                    part_size=self.part_size, num_parallel_uploads=self.parallel_uploads,
                )

        self._call("upload to", key, op)

    def get_bytes(self, key: str) -> bytes:
        full = self._full(key)

        def op(c: Minio) -> tuple[bytes, str | None]:
            resp = c.get_object(bucket_name=self.bucket, object_name=full)
            try:
                return resp.read(), resp.headers.get(SHA256_HEADER)
            finally:
                resp.close()
                resp.release_conn()

        data, expected = self._call("read", key, op)
        if expected:
            self._verify(key, expected, hashlib.sha256(data).hexdigest())
        return data

    def get_file(self, key: str, path: str | Path) -> None:
        """Download to ``path`` through a temporary sibling: ``path`` is whole or untouched."""
        full = self._full(key)
        dest = Path(path)

        def op(c: Minio) -> None:
            tmp = dest.with_name(f".{dest.name}.l360part-{uuid.uuid4().hex[:12]}")
            try:
                resp = c.get_object(bucket_name=self.bucket, object_name=full)
                try:
                    h = hashlib.sha256()
                    with open(tmp, "wb") as fh:
                        for chunk in resp.stream(amt=MiB):
                            fh.write(chunk)
                            h.update(chunk)
                    expected = resp.headers.get(SHA256_HEADER)
                finally:
                    resp.close()
                    resp.release_conn()
                if expected:
                    self._verify(key, expected, h.hexdigest())
                os.replace(tmp, dest)
            finally:
                tmp.unlink(missing_ok=True)

        self._call("download", key, op)

    def _verify(self, key: str, expected: str, actual: str) -> None:
        if expected.lower() != actual:
            raise ChecksumMismatch(
                f"object {self.uri(key)} read back with sha256 {actual[:16]}…, but was uploaded with "
                f"{expected[:16]}…; the transfer was cut short or the object was changed outside the "
                "pipeline. A retry downloads it again; if it persists, re-run the stage that wrote it."
            )

    def stat(self, key: str) -> ObjectInfo:
        full = self._full(key)
        st = self._call("stat", key, lambda c: c.stat_object(bucket_name=self.bucket, object_name=full))
        return ObjectInfo(key, int(st.size or 0), _utc(st.last_modified))

    def object_sha256(self, key: str) -> str | None:
        """The SHA-256 recorded at upload (None for objects written by other tools)."""
        full = self._full(key)
        st = self._call("stat", key, lambda c: c.stat_object(bucket_name=self.bucket, object_name=full))
        return (st.metadata or {}).get(SHA256_HEADER)

    def list(self, prefix: str = "", *, recursive: bool = True) -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix`` (which may end mid-name), in key order.

        A listing interrupted by a transient error resumes after the last key it returned, so a
        long listing never yields a key twice. "Folder marker" objects (keys ending in '/', made
        by some consoles) are not objects of this store and are skipped, as is the scratch key
        of the conditional-write probe (like LocalStore hides its temporary files).
        """
        full = self.prefix + prefix
        started = time.monotonic()
        attempt = 0
        last: str | None = None
        while True:
            attempt += 1
            try:
                for obj in self._ready(self.client).list_objects(
                    bucket_name=self.bucket, prefix=full, recursive=recursive, start_after=last,
                ):
                    name = obj.object_name or ""
                    if obj.is_dir:
                        continue
                    last = name
                    if name.endswith("/") or name.startswith(self.prefix + _PROBE_DIR):
                        continue
                    yield ObjectInfo(self._rel(name), int(obj.size or 0), _utc(obj.last_modified))
                return
            except Exception as exc:  # noqa: BLE001 - classified in _handle
                self._handle(exc, "list", prefix, attempt, started)

    def list_prefixes(self, prefix: str) -> list[str]:
        """Immediate sub-"folders" of ``prefix`` (S3 CommonPrefixes of a '/'-delimited listing)."""
        prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        full = self.prefix + prefix

        def op(c: Minio) -> list[str]:
            return [self._rel(o.object_name) for o in
                    c.list_objects(bucket_name=self.bucket, prefix=full, recursive=False)
                    if o.is_dir and o.object_name]

        return self._call("list", prefix, op)

    def delete(self, key: str) -> None:
        full = self._full(key)
        self._call("delete", key, lambda c: c.remove_object(bucket_name=self.bucket, object_name=full))

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix`` with batched DeleteObjects requests."""
        keys = [self.prefix + i.key for i in self.list(prefix)]
        if not keys:
            return 0

        def op(c: Minio) -> None:
            errors = list(c.remove_objects(
                bucket_name=self.bucket, delete_object_list=[DeleteObject(name=k) for k in keys]))
            if errors:
                first = errors[0]
                raise StoreError(
                    f"cannot delete {len(errors)} of {len(keys)} objects under {self._where(prefix)}; "
                    f"first: {first.name}: {first.code} {first.message}"
                )

        self._call("delete under", prefix, op)
        return len(keys)

    def copy(self, src: str, dst: str) -> None:
        """Server-side copy (no bytes pass through this process); metadata, checksum included."""
        full_src, full_dst = self._full(src), self._full(dst)

        def op(c: Minio) -> None:
            c.copy_object(bucket_name=self.bucket, object_name=full_dst,
                          source=CopySource(bucket_name=self.bucket, object_name=full_src))

        self._call(f"copy to {dst!r} from", src, op)

    def presigned_get(self, key: str, expires: timedelta | float = timedelta(hours=24)) -> str:
        """A URL anyone can GET the object with until it expires (1 s .. 7 days).

        Signed for ``public_endpoint`` when one is configured (reviewers reach MinIO through an
        ingress, not the in-cluster service name); computing it makes no request.
        """
        full = self._full(key)
        exp = expires if isinstance(expires, timedelta) else timedelta(seconds=float(expires))
        if not timedelta(seconds=1) <= exp <= timedelta(days=7):
            raise ValueError(f"a presigned URL must expire in 1 second .. 7 days, not {exp}")
        return self._presign_client().presigned_get_object(
            bucket_name=self.bucket, object_name=full, expires=exp)

    # -- create-if-absent ---------------------------------------------------------------------
    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create ``key`` only if it does not exist; True if this call created it.

        Native mode (AWS S3, MinIO, moto): one PUT with ``If-None-Match: *``; the server decides
        atomically, so among concurrent callers exactly one gets True (real S3/MinIO check under
        their object lock; moto's check is not locked, so moto only approximates this under
        concurrency). A retried request whose first attempt did land gets 412, so the object's
        writer nonce is compared: the call still reports True for its own write.

        Emulated mode (servers that ignore the header, detected once by a probe in ``auto``):
        exists? → PUT with a nonce → read the nonce back. A sequential caller gets the exact
        answer; two callers racing inside the same few milliseconds may both get True, and the
        later PUT's bytes win. Stage outputs only use this for deterministic content (run config,
        source records), where both writers write the same bytes; release claims may then collide,
        so run releases with one active DAG run (as the release DAG does).
        """
        full = self._full(key)
        digest = hashlib.sha256(data).hexdigest()
        nonce = uuid.uuid4().hex
        headers = {"Content-Type": "application/octet-stream", SHA256_HEADER: digest, WRITER_HEADER: nonce}
        if self._conditional_is_native():
            return self._put_if_absent_native(key, full, data, headers, nonce)
        return self._put_if_absent_emulated(key, full, data, digest, nonce)

    def _put_if_absent_native(self, key: str, full: str, data: bytes, headers: dict, nonce: str) -> bool:
        attempts = 0

        def op(c: Minio) -> bool:
            nonlocal attempts
            attempts += 1
            try:
                c._put_object(bucket_name=self.bucket, object_name=full, data=data,
                              headers={**headers, "If-None-Match": "*"})
                return True
            except S3Error as exc:
                if exc.code != "PreconditionFailed":
                    raise
            if attempts == 1:
                return False
            # an earlier attempt may have landed before its response was lost: is it ours?
            st = c.stat_object(bucket_name=self.bucket, object_name=full)
            return (st.metadata or {}).get(WRITER_HEADER) == nonce

        return self._call("create", key, op)

    def _put_if_absent_emulated(self, key: str, full: str, data: bytes, digest: str, nonce: str) -> bool:
        if self.exists(key):
            return False

        def put(c: Minio) -> None:
            c.put_object(bucket_name=self.bucket, object_name=full, data=io.BytesIO(data), length=len(data),
                         metadata={"sha256": digest, "l360-writer": nonce})

        self._call("create", key, put)
        st = self._call("stat", key, lambda c: c.stat_object(bucket_name=self.bucket, object_name=full))
        return (st.metadata or {}).get(WRITER_HEADER) == nonce

    def _conditional_is_native(self) -> bool:
        if self._conditional_native is None:
            where = (self.endpoint, self.bucket)
            if where not in _NATIVE_CONDITIONAL:
                _NATIVE_CONDITIONAL[where] = self._probe_conditional_writes()
            self._conditional_native = _NATIVE_CONDITIONAL[where]
        return self._conditional_native

    def _probe_conditional_writes(self) -> bool:
        """Does the server honour ``If-None-Match: *`` on PUT? Two conditional PUTs on a scratch key."""
        if not hasattr(Minio, "_put_object"):
            log.warning("this minio client has no raw PUT; put_if_absent is emulated (pin minio 7.2.x)")
            return False
        probe = f"{self.prefix}{_PROBE_DIR}{uuid.uuid4().hex}"

        def op(c: Minio) -> bool:
            try:
                for _ in range(2):
                    c._put_object(bucket_name=self.bucket, object_name=probe, data=b"probe",
                                  headers={"If-None-Match": "*"})
            except S3Error as exc:
                if exc.code == "PreconditionFailed":
                    return True
                if exc.code in ("NotImplemented", "InvalidArgument", "InvalidRequest"):
                    return False
                raise
            finally:
                with contextlib.suppress(Exception):
                    c.remove_object(bucket_name=self.bucket, object_name=probe)
            return False

        native = self._call("probe conditional writes on", None, op)
        if not native:
            log.warning("S3 server at %s ignores If-None-Match on PUT; put_if_absent is emulated "
                        "(check-write-verify, not atomic under races)", self.endpoint)
        return native

    # -- URIs -------------------------------------------------------------------------------
    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self.prefix}" + (check_key(key) if key else "")

    def key_from_uri(self, uri: str) -> str:
        base = f"s3://{self.bucket}/{self.prefix}"
        if uri == base.rstrip("/"):
            return ""
        if not uri.startswith(base):
            raise ValueError(f"{uri!r} is not inside this store ({base})")
        key = uri[len(base):]
        return check_key(key) if key else key


def _utc(dt: datetime | None) -> datetime:
    if dt is None:
        return datetime.fromtimestamp(0, UTC)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _short(exc: BaseException) -> str:
    """The innermost cause's message (urllib3 wraps the socket error), capped in length.

    Requests carry their signature in headers, never in the URL, so the text holds no secret."""
    while isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    text = str(exc)
    return text if len(text) <= 300 else text[:300] + "…"

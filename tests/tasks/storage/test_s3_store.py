"""The MinIO/S3 store against a real S3-protocol server on loopback (moto's server mode).

Three groups: a contract test run on LocalStore and S3Store alike (they must answer the same);
S3-specific behaviour (prefix, checksums, multipart, presigned links, conditional writes, env
configuration); and the faults a user meets (wrong credentials, missing bucket, nothing
listening, 5xx, an object deleted under a reader, the server going away mid-stage).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import pickle
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tasks import layout
from tasks.errors import ConfigError, ObjectNotFound, PermanentError, StoreError
from tasks.storage import LocalStore, open_store, store_from_env
from tasks.storage.s3 import BucketNotFound, ChecksumMismatch, S3AccessDenied, S3Store
from tests.tasks.storage.conftest import FAST, free_port, start_moto, unique_bucket

SECRET = "s3cr3t-never-shown"


# -- the shared contract: LocalStore and S3Store answer the same ------------------------------
@pytest.fixture(params=["local", "s3", "s3-prefixed"])
def any_store(request, tmp_path, make_s3):
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    if request.param == "s3":
        return make_s3()
    return make_s3(prefix="team-a/")


KEYS = ["a/x.json", "a/b/c.bin", "ab", "a/ba/z", "a/b2.txt", "a/b/d/e", "raw/ünïcode näme.mp4", "raw/Z.mp4"]


def test_contract_listing_order_and_partial_prefixes(any_store):
    s = any_store
    for k in KEYS:
        s.put_bytes(k, k.encode())
    everything = sorted(KEYS)  # code-point order == S3's UTF-8 byte order
    assert [i.key for i in s.list("")] == everything
    assert [i.key for i in s.list("a/")] == ["a/b/c.bin", "a/b/d/e", "a/b2.txt", "a/ba/z", "a/x.json"]
    assert [i.key for i in s.list("a/b")] == ["a/b/c.bin", "a/b/d/e", "a/b2.txt", "a/ba/z"]  # mid-name
    assert [i.key for i in s.list("a/b", recursive=False)] == ["a/b2.txt"]
    assert [i.key for i in s.list("a/", recursive=False)] == ["a/b2.txt", "a/x.json"]
    assert [i.key for i in s.list("", recursive=False)] == ["ab"]
    assert [i.key for i in s.list("nothing/")] == []
    assert s.list_prefixes("") == ["a/", "raw/"]
    assert s.list_prefixes("a/") == ["a/b/", "a/ba/"]
    assert s.list_prefixes("a") == ["a/b/", "a/ba/"]  # a prefix without '/' means the folder
    assert s.list_prefixes("a/b/") == ["a/b/d/"]
    assert s.list_prefixes("zzz/") == []
    now = _dt.datetime.now(_dt.UTC)
    for info in s.list(""):
        assert info.modified.tzinfo is not None and info.modified.utcoffset() == _dt.timedelta(0)
        assert abs((now - info.modified).total_seconds()) < 120
        assert info.size == len(info.key.encode())


def test_contract_round_trip_copy_delete(any_store, tmp_path):
    s = any_store
    s.put_bytes("v/one.bin", b"\x00\x01" * 1000)
    s.put_json("v/doc.json", {"k": "é", "n": [1, 2]})
    assert s.get_bytes("v/one.bin") == b"\x00\x01" * 1000
    assert s.get_json("v/doc.json") == {"k": "é", "n": [1, 2]}
    assert s.stat("v/one.bin").size == 2000 and s.stat("v/one.bin").key == "v/one.bin"
    assert s.exists("v/one.bin") and not s.exists("v/none") and not s.exists("v")
    s.put_bytes("v/one.bin", b"new")  # overwrite
    assert s.get_bytes("v/one.bin") == b"new"
    src = tmp_path / "up.txt"
    src.write_text("file body")
    s.put_file("v/up.txt", src, content_type="text/plain")
    dest = tmp_path / "down.txt"
    s.get_file("v/up.txt", dest)
    assert dest.read_text() == "file body"
    s.copy("v/up.txt", "w/copied.txt")
    assert s.get_bytes("w/copied.txt") == b"file body"
    with s.local_file("w/copied.txt") as p:
        assert p.read_text() == "file body"
    with s.local_dir("v/", suffix=".bin") as d:
        assert sorted(x.name for x in d.iterdir()) == ["one.bin"]
    s.delete("w/copied.txt")
    s.delete("w/never-existed")  # deleting nothing is not an error
    assert not s.exists("w/copied.txt")
    assert s.list_prefixes("") == ["v/"]
    assert s.delete_prefix("v/") == 3
    assert list(s.list("")) == []
    for op in (lambda: s.get_bytes("v/one.bin"), lambda: s.stat("v/one.bin"),
               lambda: s.get_file("v/one.bin", tmp_path / "x"), lambda: s.copy("v/one.bin", "y")):
        with pytest.raises(ObjectNotFound):
            op()
    assert not (tmp_path / "x").exists()


def test_contract_put_if_absent_and_uris(any_store):
    s = any_store
    assert s.put_if_absent("claims/1", b"first") is True
    assert s.put_if_absent("claims/1", b"second") is False
    assert s.get_bytes("claims/1") == b"first"
    for key in ("raw/ünïcode näme.mp4", "raw/", "videos/ab/runs/x/_MANIFEST.json"):
        assert s.key_from_uri(s.uri(key)) == key
    for bad in ("", "/abs", "a/../b", "a//b", "a\\b", "./a"):
        with pytest.raises(ValueError):
            s.put_bytes(bad, b"x")
    with pytest.raises(ValueError):
        s.key_from_uri("s3://some-other-bucket/raw/x.mp4")


def test_put_if_absent_has_one_winner_under_concurrency(make_s3):
    """Native conditional writes: among racing callers exactly one creates the object."""
    s = make_s3()
    wins: list[bool] = []
    barrier = threading.Barrier(8)

    def claim(i):
        barrier.wait()
        wins.append(s.put_if_absent("releases/v1/.claim", str(i).encode()))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert s._conditional_native is True  # moto honours If-None-Match: *
    assert wins.count(True) == 1
    assert s.get_bytes("releases/v1/.claim").decode() in {str(i) for i in range(8)}


# -- S3 specifics ------------------------------------------------------------------------------
def test_key_prefix_is_transparent(make_s3):
    bucket = unique_bucket()
    root = make_s3(bucket)
    team = make_s3(bucket, prefix="/team-a/")
    root.put_bytes("raw/outside.mp4", b"o")
    team.put_bytes("raw/inside.mp4", b"i")
    assert team.prefix == "team-a/"
    assert [i.key for i in root.list("")] == ["raw/outside.mp4", "team-a/raw/inside.mp4"]
    assert [i.key for i in team.list("")] == ["raw/inside.mp4"]
    assert team.list_prefixes("") == ["raw/"]
    assert team.uri("raw/inside.mp4") == f"s3://{bucket}/team-a/raw/inside.mp4"
    assert team.key_from_uri(f"s3://{bucket}/team-a/raw/inside.mp4") == "raw/inside.mp4"
    assert team.uri() == f"s3://{bucket}/team-a/" and team.key_from_uri(team.uri()) == ""
    with pytest.raises(ValueError, match="not inside this store"):
        team.key_from_uri(f"s3://{bucket}/raw/outside.mp4")
    team.copy("raw/inside.mp4", "raw/copy.mp4")
    assert root.get_bytes("team-a/raw/copy.mp4") == b"i"


def test_checksums_are_stored_and_verified(make_s3, tmp_path):
    s = make_s3()
    s.put_bytes("k.bin", b"payload")
    assert s.object_sha256("k.bin") == hashlib.sha256(b"payload").hexdigest()
    # an object replaced behind the pipeline's back, keeping the old checksum metadata
    s.client.put_object(bucket_name=s.bucket, object_name="k.bin", data=io.BytesIO(b"tampered"), length=8,
                        metadata={"sha256": hashlib.sha256(b"payload").hexdigest()})
    with pytest.raises(ChecksumMismatch, match=r"k\.bin.*changed outside the pipeline"):
        s.get_bytes("k.bin")
    dest = tmp_path / "d" / "k.bin"
    dest.parent.mkdir()
    with pytest.raises(ChecksumMismatch):
        s.get_file("k.bin", dest)
    assert list(dest.parent.iterdir()) == []  # neither the file nor a temporary part is left
    assert issubclass(ChecksumMismatch, StoreError)  # transient: a retry downloads it again
    # objects uploaded by other tools carry no checksum and are read as they are
    s.client.put_object(bucket_name=s.bucket, object_name="raw/other.mp4", data=io.BytesIO(b"x"), length=1)
    assert s.object_sha256("raw/other.mp4") is None and s.get_bytes("raw/other.mp4") == b"x"


def test_large_files_go_up_in_parts(make_s3, tmp_path):
    s = make_s3(part_size=5 * 1024 * 1024)  # S3's smallest part size, as the test threshold
    big = tmp_path / "big.bin"
    data = os.urandom(11 * 1024 * 1024 + 123)
    big.write_bytes(data)
    s.put_file("raw/big.bin", big)
    st = s.client.stat_object(bucket_name=s.bucket, object_name="raw/big.bin")
    assert st.etag.endswith("-3")  # a multipart ETag: 3 parts
    assert s.object_sha256("raw/big.bin") == hashlib.sha256(data).hexdigest()
    out = tmp_path / "out.bin"
    s.get_file("raw/big.bin", out)
    assert out.read_bytes() == data
    s.put_bytes("raw/big2.bin", data[: 6 * 1024 * 1024])
    assert s.client.stat_object(bucket_name=s.bucket, object_name="raw/big2.bin").etag.endswith("-2")
    assert s.get_bytes("raw/big2.bin") == data[: 6 * 1024 * 1024]
    with pytest.raises(ConfigError, match="part_size"):
        make_s3(part_size=1024)


def test_copy_is_server_side(make_s3, monkeypatch):
    s = make_s3()
    s.put_bytes("a.bin", b"abc")

    def no_download(*a, **k):
        raise AssertionError("copy must not download the object")

    monkeypatch.setattr(s, "get_bytes", no_download)
    s.copy("a.bin", "b/a.bin")
    monkeypatch.undo()
    assert s.get_bytes("b/a.bin") == b"abc"
    assert s.object_sha256("b/a.bin") == hashlib.sha256(b"abc").hexdigest()  # metadata travels along


def test_presigned_get(make_s3, moto_server):
    s = make_s3()
    s.put_bytes("review/pkg.zip", b"zip bytes")
    url = s.presigned_get("review/pkg.zip", _dt.timedelta(minutes=5))
    assert "X-Amz-Signature=" in url and SECRET not in url
    with urllib.request.urlopen(url, timeout=10) as resp:  # no credentials: the link is enough
        assert resp.read() == b"zip bytes"
    with pytest.raises(ValueError, match="7 days"):
        s.presigned_get("review/pkg.zip", _dt.timedelta(days=8))
    public = make_s3(s.bucket, public_endpoint="https://minio.example.org")
    assert public.presigned_get("review/pkg.zip", 60).startswith("https://minio.example.org/")


def test_put_if_absent_retried_after_a_lost_response_is_still_ours(make_s3, fault_proxy):
    s = make_s3(endpoint=fault_proxy.endpoint, conditional_writes="native")
    fault_proxy.drop_after_forward = 1  # the PUT lands, its answer never arrives
    assert s.put_if_absent("videos/x/source.json", b"record") is True
    assert s.put_if_absent("videos/x/source.json", b"record") is False
    assert s.get_bytes("videos/x/source.json") == b"record"


def test_put_if_absent_emulated_when_server_ignores_the_header(make_s3, fault_proxy, caplog):
    fault_proxy.strip_headers = {"if-none-match"}
    s = make_s3(endpoint=fault_proxy.endpoint)
    with caplog.at_level("WARNING", logger="tasks.storage.s3"):
        assert s.put_if_absent("c", b"1") is True
    assert s._conditional_native is False and "ignores If-None-Match" in caplog.text
    assert s.put_if_absent("c", b"2") is False
    assert s.get_bytes("c") == b"1"
    assert [i.key for i in s.list("")] == ["c"]  # the probe cleaned up after itself


def test_list_resumes_after_a_transient_error(make_s3, monkeypatch):
    import urllib3

    s = make_s3()
    for i in range(5):
        s.put_bytes(f"raw/{i}.mp4", b"x")
    real = type(s.client).list_objects
    calls = []

    def flaky(self, **kw):
        calls.append(kw.get("start_after"))
        for n, obj in enumerate(real(self, **kw)):
            if len(calls) == 1 and n == 2:
                raise urllib3.exceptions.ProtocolError("connection reset mid-listing")
            yield obj

    monkeypatch.setattr(type(s.client), "list_objects", flaky)
    assert [i.key for i in s.list("raw/")] == [f"raw/{i}.mp4" for i in range(5)]  # no key twice
    assert calls == [None, "raw/1.mp4"]


def test_discovery_uses_utc_modified_times(make_s3):
    from tasks.discovery import find_uploads

    s = make_s3()
    before = _dt.datetime.now(_dt.UTC) - _dt.timedelta(seconds=2)
    s.put_bytes("raw/day1/a.mp4", b"a")
    s.put_bytes("raw/day1/b.mp4", b"b")
    s.put_bytes("videos/not-an-upload.json", b"{}")
    after = _dt.datetime.now(_dt.UTC) + _dt.timedelta(seconds=2)
    found, report = find_uploads(s, start=before, end=after)
    assert sorted(found) == ["raw/day1/a.mp4", "raw/day1/b.mp4"] and report["over_limit"] == 0
    assert find_uploads(s, start=before - _dt.timedelta(days=1), end=before)[0] == []
    assert s.stat("raw/day1/a.mp4").modified.tzinfo is not None


def test_client_is_per_process_and_store_pickles(make_s3, monkeypatch):
    s = make_s3()
    s.put_bytes("k", b"v")
    first = s.client
    assert s.client is first
    real_pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: real_pid + 1)  # as in a forked child
    assert s.client is not first and s.get_bytes("k") == b"v"
    monkeypatch.undo()
    clone = pickle.loads(pickle.dumps(s))
    assert clone._client_state is None and clone.get_bytes("k") == b"v"


def test_secrets_never_shown():
    s = S3Store(unique_bucket(), endpoint=f"127.0.0.1:{free_port()}", access_key="AKIAEXAMPLEKEY",
                secret_key=SECRET, secure=False, **FAST)
    assert SECRET not in repr(s) and SECRET not in repr(vars(s)) and "AKIAEXAMPLEKEY" not in repr(s)
    with pytest.raises(StoreError) as err:
        s.get_bytes("k")
    assert SECRET not in str(err.value)


# -- configuration: URLs and the environment -------------------------------------------------
def test_open_store_with_url_and_environment(moto_server, monkeypatch):
    for var in [v for v in os.environ if v.startswith(("LEADER360V_S3_", "AWS_"))]:
        monkeypatch.delenv(var)
    bucket = unique_bucket()
    monkeypatch.setenv("LEADER360V_S3_ENDPOINT", moto_server.url)
    monkeypatch.setenv("LEADER360V_S3_ACCESS_KEY", "envkey")
    monkeypatch.setenv("LEADER360V_S3_SECRET_KEY", SECRET)
    monkeypatch.setenv("LEADER360V_S3_REGION", "eu-central-1")
    s = open_store(f"s3://{bucket}/team-b?create=true&retries=1")
    assert isinstance(s, S3Store)
    assert (s.bucket, s.prefix, s.endpoint, s.secure, s.region, s.retries) == (
        bucket, "team-b/", moto_server.endpoint, False, "eu-central-1", 1)
    assert s._creds.access_key == "envkey" and s._creds.secret_key == SECRET
    s.put_bytes("x", b"1")
    assert s.get_bytes("x") == b"1"
    monkeypatch.setenv("LEADER360V_STORE", f"s3://{bucket}/team-b")
    assert store_from_env().get_bytes("x") == b"1"
    # explicit options (an Airflow connection) win over the environment
    s2 = open_store(f"s3://{bucket}", access_key="conn-login", secret_key="conn-password", secure=False,
                    endpoint=moto_server.endpoint)
    assert s2._creds.access_key == "conn-login"
    # AWS_* fallbacks
    for var in ("LEADER360V_S3_ENDPOINT", "LEADER360V_S3_ACCESS_KEY", "LEADER360V_S3_SECRET_KEY",
                "LEADER360V_S3_REGION"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://s3.example.org")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "awskey")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "awssecret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "tok")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    s3 = S3Store.from_env("some-bucket")
    assert (s3.endpoint, s3.secure, s3.region) == ("s3.example.org", True, "us-west-2")
    assert (s3._creds.access_key, s3._creds.session_token) == ("awskey", "tok")


@pytest.mark.parametrize("url, message", [
    ("s3://bucket?endpoint=h:1&secret_key=x", "must not be put in URLs"),
    ("s3://key:secret@bucket?endpoint=h:1", "must not contain credentials"),
    ("s3://bucket?endpoint=h:1&colour=blue", "unknown option 'colour'"),
    ("s3://bucket", "no S3 endpoint configured"),
    ("s3://Bad_Bucket?endpoint=h:1", "invalid bucket name"),
    ("s3://bucket?endpoint=https://h:1&secure=false", "contradicts secure=False"),
    ("s3://bucket?endpoint=h:1&secure=maybe", "true or false"),
    ("s3://bucket?endpoint=h:1&conditional_writes=sometimes", "conditional_writes"),
    ("s3://bucket/a/../b?endpoint=h:1", "invalid key prefix"),
])
def test_bad_store_urls_are_config_errors(url, message, monkeypatch):
    for var in [v for v in os.environ if v.startswith(("LEADER360V_S3_", "AWS_"))]:
        monkeypatch.delenv(var)
    with pytest.raises(ConfigError, match=message) as err:
        open_store(url)
    assert "secret" not in str(err.value).replace("secret_key", "").replace("SECRET_KEY", "")


def test_options_are_for_s3_urls_only(tmp_path):
    with pytest.raises(ConfigError, match="s3:// stores only"):
        open_store(tmp_path, access_key="x")
    with pytest.raises(ConfigError, match="unsupported store URL"):
        open_store("ftp://host/bucket")


# -- faults ------------------------------------------------------------------------------------
def test_missing_bucket_is_a_clear_error_unless_bootstrapped(make_s3):
    s = make_s3(create_bucket=False)
    t0 = time.monotonic()
    with pytest.raises(BucketNotFound, match=rf"bucket '{s.bucket}' does not exist.*create=true") as err:
        s.put_bytes("k", b"v")
    assert isinstance(err.value, PermanentError) and time.monotonic() - t0 < 1.0  # not retried
    with pytest.raises(BucketNotFound):
        s.ensure_bucket()
    boot = make_s3(s.bucket, create_bucket=True)
    boot.ensure_bucket()  # the bootstrap step of a deployment
    boot.ensure_bucket()  # idempotent
    boot.put_bytes("k", b"v")
    assert s.get_bytes("k") == b"v"  # the bucket exists now, for every store on it


@pytest.fixture
def iam_auth(moto_server):
    """Switch moto to checking signatures against its IAM users; yields (access_key, secret)."""
    import boto3

    iam = boto3.client("iam", endpoint_url=moto_server.url, region_name="us-east-1",
                       aws_access_key_id="setup", aws_secret_access_key="setup")
    user = f"labeler-{unique_bucket()}"
    iam.create_user(UserName=user)
    policy = iam.create_policy(PolicyName=f"s3-{user}", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    iam.attach_user_policy(UserName=user, PolicyArn=policy["Policy"]["Arn"])
    key = iam.create_access_key(UserName=user)["AccessKey"]

    def set_auth(count: str) -> None:
        req = urllib.request.Request(f"{moto_server.url}/moto-api/reset-auth", data=count.encode(),
                                     method="POST", headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(req, timeout=10).read()

    set_auth("0")
    try:
        yield key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        set_auth("inf")  # moto's auth switch is process-global: always turn it back off


def test_wrong_credentials_are_a_clear_permanent_error(make_s3, iam_auth):
    access, secret = iam_auth
    good = make_s3(access_key=access, secret_key=secret)
    good.put_bytes("k", b"v")
    assert good.get_bytes("k") == b"v"
    cases = [(access, "not-the-secret", "SignatureDoesNotMatch"), ("AKIAUNKNOWNKEY000000", secret, "InvalidAccessKeyId")]
    for ak, sk, code in cases:
        for first_use in (True, False):  # refused at the bucket check, and on a later request
            bad = make_s3(good.bucket, access_key=ak, secret_key=sk)
            if not first_use:
                bad._bucket_ready_pid = os.getpid()
            t0 = time.monotonic()
            with pytest.raises(S3AccessDenied, match=rf"refused to read s3://{good.bucket}/k .*{code}") as err:
                bad.get_bytes("k")
            assert time.monotonic() - t0 < 1.0  # permanent: not retried
            assert isinstance(err.value, PermanentError)
            assert sk not in str(err.value) and "LEADER360V_S3_SECRET_KEY" in str(err.value)


def test_nothing_listening_fails_fast_with_an_actionable_error():
    port = free_port()
    s = S3Store("leader360v", endpoint=f"127.0.0.1:{port}", secure=False, access_key="a", secret_key="b",
                **FAST)
    t0 = time.monotonic()
    with pytest.raises(StoreError) as err:
        s.put_bytes("videos/v/x.json", b"{}")
    assert time.monotonic() - t0 < 3.0
    msg = str(err.value)
    assert f"s3://leader360v/videos/v/x.json at http://127.0.0.1:{port}" in msg  # endpoint, bucket, key
    assert "Connection refused" in msg and "3 attempts" in msg and "LEADER360V_S3_ENDPOINT" in msg


def test_server_errors_are_retried_then_reported(make_s3, fault_proxy):
    s = make_s3(endpoint=fault_proxy.endpoint)
    s.put_bytes("warm", b"up")  # bucket created through the proxy
    fault_proxy.fail_next = 2  # two 503 SlowDown, then the server answers
    s.put_bytes("k", b"v")
    assert s.get_bytes("k") == b"v"
    fault_proxy.fail_next = 100
    with pytest.raises(StoreError, match=r"SlowDown \(HTTP 503\).*3 attempts"):
        s.get_bytes("k")
    fault_proxy.fail_next = 0


def test_object_deleted_between_listing_and_reading(make_s3, tmp_path, monkeypatch):
    s = make_s3()
    s.put_bytes("raw/gone.mp4", b"x")
    other = make_s3(s.bucket)  # another worker
    listed = [i.key for i in s.list("raw/")]
    other.delete("raw/gone.mp4")
    with pytest.raises(ObjectNotFound, match="raw/gone.mp4"):
        s.get_bytes(listed[0])
    dest = tmp_path / "dl"
    dest.mkdir()
    with pytest.raises(ObjectNotFound):
        s.get_file(listed[0], dest / "gone.mp4")
    assert list(dest.iterdir()) == []
    tmp_root = tmp_path / "tmp"
    tmp_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_root))
    with pytest.raises(ObjectNotFound):
        with s.local_file(listed[0]):
            pass
    s.put_bytes("raw/here.mp4", b"y")
    with s.local_file("raw/here.mp4") as p:
        assert p.read_bytes() == b"y"
    assert list(tmp_root.iterdir()) == []  # temporary copies are removed, on success and failure


# -- the pipeline on S3 ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    from tasks.synth import render_clip

    out = tmp_path_factory.mktemp("s3clip")
    render_clip(out, seconds=1.5, fps=6, width=256, seed=1, progress=False)
    return out / "clip.mp4"


def _stage_objects(store, video_id: str, run: str, stage: str) -> dict[str, str]:
    """key -> sha256 of every object under a stage's prefix (its manifest excluded)."""
    prefix = layout.stage_prefix(video_id, run, stage)
    return {i.key: hashlib.sha256(store.get_bytes(i.key)).hexdigest() for i in store.list(prefix)
            if not i.key.endswith(layout.MANIFEST)}


@pytest.fixture(scope="module")
def labeled_on_s3(moto_server, clip, tmp_path_factory):
    """One uninterrupted ``label`` run with the S3 store: (store, result)."""
    from tasks.label import label_video

    store = S3Store(unique_bucket("label"), endpoint=moto_server.endpoint, access_key="testing",
                    secret_key="testing", secure=False, create_bucket=True, **FAST)
    result = label_video(clip, tmp_path_factory.mktemp("label-out"), store=store, progress=False)
    return store, result


def test_full_label_run_with_the_s3_store(labeled_on_s3):
    from tasks.stages.runner import ORDER

    store, r = labeled_on_s3
    assert r.validation_passed and r.frames == 9 and r.objects > 0
    assert (r.out_dir / "annotations.json").is_file() and len(list((r.out_dir / "idmaps").iterdir())) == 9
    for stage in ORDER:
        m = store.get_json(layout.manifest_key(r.video_id, r.run, stage))
        assert m["stage"] == stage
        for name, key in m["keys"].items():
            assert m["outputs"][name] == store.uri(key) and m["outputs"][name].startswith(f"s3://{store.bucket}/")
            if not key.endswith("/"):
                assert store.exists(key), (stage, name, key)
        for key, f in m["files"].items():  # what the stage wrote is what the bucket holds
            assert store.object_sha256(key) == f["sha256"], key
    frames = layout.frames_prefix(r.video_id, 6, 256)
    assert store.exists(frames + layout.MANIFEST) and store.exists(layout.frame_key(frames, 8))


def test_review_package_hands_out_presigned_links(labeled_on_s3):
    import urllib.request

    from tasks.status import review_package

    store, r = labeled_on_s3
    pkg = review_package(store, r.video_id, expires_hours=1)
    assert pkg["links_expire_hours"] == 1
    for url in [pkg["preview"], *[f["crop_url"] for f in pkg["flags"] if "crop_url" in f]]:
        assert url.startswith("http://") and "X-Amz-Signature" in url
    with urllib.request.urlopen(pkg["preview"]) as resp:   # a reviewer's browser: no credentials
        assert resp.status == 200 and len(resp.read()) > 1000


def test_server_going_away_mid_stage_then_retry(labeled_on_s3, clip, tmp_path, monkeypatch):
    """The server stops after the 4th output of ``propagate``: the stage fails with StoreError,
    nothing is committed, and a retry once the server is back yields the same outputs as an
    uninterrupted run."""
    from tasks.label import label_video

    ref_store, ref = labeled_on_s3
    ep = start_moto()
    port = ep.port
    store = S3Store(unique_bucket("fault"), endpoint=ep.endpoint, access_key="testing", secret_key="testing",
                    secure=False, create_bucket=True, **FAST)
    stage = "propagate"
    marker = f"/{stage}/"
    real_put = store.put_bytes
    puts = []

    def put_bytes(key, data, **kw):
        if marker in key and not key.endswith(layout.MANIFEST):
            puts.append(key)
            if len(puts) == 4:
                ep.server.stop()  # the server goes away in the middle of the stage
        return real_put(key, data, **kw)

    monkeypatch.setattr(store, "put_bytes", put_bytes)
    t0 = time.monotonic()
    with pytest.raises(StoreError) as err:
        label_video(clip, tmp_path / "out", store=store, progress=False)
    assert time.monotonic() - t0 < 30
    assert f"127.0.0.1:{port}" in str(err.value) and store.bucket in str(err.value)
    assert puts[-1] in str(err.value)  # names the object it could not write
    monkeypatch.undo()

    back = start_moto(port)  # same port, same in-process backend: the data is still there
    try:
        mkey = layout.manifest_key(ref.video_id, ref.run, stage)
        assert not store.exists(mkey)  # nothing committed for the interrupted stage
        assert len(_stage_objects(store, ref.video_id, ref.run, stage)) == 3  # its leftovers, unreferenced
        assert store.exists(layout.manifest_key(ref.video_id, ref.run, "sdr"))  # earlier stages stand

        result = label_video(clip, tmp_path / "out", store=store, progress=False)
        assert result.validation_passed
        got = _stage_objects(store, ref.video_id, ref.run, stage)
        want = _stage_objects(ref_store, ref.video_id, ref.run, stage)
        assert got == {k: want[k] for k in want} and len(got) == len(want)  # same keys, same bytes
        m = store.get_json(mkey)
        assert m["files"] == ref_store.get_json(mkey)["files"]
        for s in ("decode", "propose", "verify", "sdr", "refine"):
            assert _stage_objects(store, ref.video_id, ref.run, s) == _stage_objects(
                ref_store, ref.video_id, ref.run, s), s
    finally:
        back.server.stop()


def test_stage_retried_after_a_crash_ends_identical(make_s3, clip):
    """A crashed attempt left a damaged output and a stray object, no manifest: the re-run
    clears the prefix and writes exactly what a clean run writes."""
    from tasks.config import PipelineConfig
    from tasks.stages.runner import execute, run_chain

    s = make_s3()
    s.put_file("raw/clip.mp4", clip)
    config = PipelineConfig()
    results = run_chain(store=s, config=config, key="raw/clip.mp4", until="sdr", progress=False)
    vid, run = results[0].video_id, results[0].run
    before = _stage_objects(s, vid, run, "sdr")
    prefix = layout.stage_prefix(vid, run, "sdr")
    s.delete(layout.manifest_key(vid, run, "sdr"))
    s.put_bytes(next(iter(before)), b"half-written garbage")
    s.put_bytes(prefix + "stray-from-old-attempt.bin", b"x")
    r = execute("sdr", store=s, config=config, video_id=vid, params={"progress": False})
    assert r.status == "done"
    assert _stage_objects(s, vid, run, "sdr") == before

"""The VLM verifier against a real HTTP server on loopback that plays an OpenAI-compatible endpoint."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from tasks.backends.llm_verifier import OpenAIVerifier
from tasks.backends.protocols import Candidate, VerifyRequest
from tasks.errors import ConfigError


class Endpoint:
    """Scripted answers: each request pops the next behaviour (the last one repeats)."""

    def __init__(self):
        self.script = []
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                kind, payload = outer.script.pop(0) if len(outer.script) > 1 else outer.script[0]
                if kind == "sleep":
                    time.sleep(payload)
                    kind, payload = "answer", '{"label": "car", "thing_or_stuff": "thing", "confidence": 0.9}'
                if kind == "status":
                    self.send_response(payload)
                    self.end_headers()
                    return
                data = json.dumps({"choices": [{"message": {"content": payload}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def endpoint():
    e = Endpoint()
    yield e
    e.server.shutdown()


def req(i=1, seed=0):
    img = np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    return VerifyRequest(i, [Candidate("automobile", "color_prior", "master", 0.8)], view=img, crop=img[10:30, 10:40])


def verifier(endpoint, **kw):
    return OpenAIVerifier(endpoint.url, "qwen3-vl-8b", api_key="sk-test", backoff_s=0.01, **kw)


def test_valid_answer_request_shape_and_cache(endpoint):
    endpoint.script = [("answer", '{"label": "car", "thing_or_stuff": "thing", "confidence": 0.87}')]
    v = verifier(endpoint)
    [a] = v.verify([req()])
    assert (a.label, a.confidence, a.thing_or_stuff, a.error) == ("car", 0.87, "thing", None)
    sent = endpoint.requests[0]
    assert sent["path"] == "/v1/chat/completions" and sent["auth"] == "Bearer sk-test"
    body = sent["body"]
    assert body["model"] == "qwen3-vl-8b" and body["temperature"] == 0.2
    assert body["response_format"] == {"type": "json_object"}
    system, user = body["messages"]
    assert "sofa" in system["content"] and "unknown" in system["content"]     # the closed vocabulary
    assert [p["type"] for p in user["content"]] == ["text", "image_url", "image_url"]
    assert "automobile" in user["content"][0]["text"]
    [b] = v.verify([req()])                                                   # same crop: cached
    assert b.label == "car" and len(endpoint.requests) == 1
    assert v.stats.to_json()["cache_hit_rate"] == 0.5
    assert "sk-test" not in repr(v)


@pytest.mark.parametrize("answer, error", [
    ("this is not json", "not JSON"),
    ('{"thing_or_stuff": "thing"}', "no 'label'"),
    ('{"label": "flux capacitor", "confidence": 0.99}', "out of vocabulary"),
    ('{"label": "unknown", "confidence": 0.2}', "not sure"),
])
def test_bad_answers_become_unknown_with_a_reason(endpoint, answer, error):
    endpoint.script = [("answer", answer)]
    [a] = verifier(endpoint).verify([req()])
    assert a.label == "unknown" and error in a.error


def test_synonyms_map_and_thing_stuff_follows_the_vocabulary(endpoint):
    endpoint.script = [("answer", '{"label": "couch", "thing_or_stuff": "stuff", "confidence": 2.5}')]
    [a] = verifier(endpoint).verify([req()])
    assert a.label == "sofa" and a.thing_or_stuff == "thing" and a.confidence == 1.0 and "model said stuff" in a.raw


def test_transient_errors_are_retried_then_succeed(endpoint):
    endpoint.script = [("status", 503), ("status", 429), ("answer", '{"label": "tree", "confidence": 0.6}')]
    v = verifier(endpoint, max_retries=3)
    [a] = v.verify([req()])
    assert a.label == "tree" and a.thing_or_stuff == "stuff" and len(endpoint.requests) == 3
    assert v.stats.retries == 2


def test_refused_request_is_not_retried(endpoint):
    endpoint.script = [("status", 401)]
    [a] = verifier(endpoint, max_retries=3).verify([req()])
    assert a.label == "unknown" and "HTTP 401" in a.error and "LEADER360V_LLM_API_KEY" in a.error
    assert len(endpoint.requests) == 1


def test_slow_endpoint_times_out_and_failures_are_not_cached(endpoint):
    endpoint.script = [("sleep", 1.0)]
    v = verifier(endpoint, timeout_s=0.2, max_retries=1)
    t = time.perf_counter()
    [a] = v.verify([req()])
    assert a.label == "unknown" and "no answer within 0.2 s" in a.error and time.perf_counter() - t < 3
    endpoint.script = [("answer", '{"label": "person", "confidence": 0.9}')]
    [b] = v.verify([req()])                     # the failure was not cached: asked again
    assert b.label == "person"


def test_unreachable_endpoint(tmp_path):
    v = OpenAIVerifier("http://127.0.0.1:9/v1", "m", max_retries=1, backoff_s=0.01, timeout_s=0.5)
    [a] = v.verify([req()])
    assert a.label == "unknown" and "cannot reach" in a.error


def test_many_requests_in_parallel_keep_their_order(endpoint):
    endpoint.script = [("answer", '{"label": "boat", "confidence": 0.7}')]
    out = verifier(endpoint, max_workers=4).verify([req(i, seed=i) for i in range(12)])
    assert [a.label for a in out] == ["boat"] * 12 and len(endpoint.requests) == 12


def test_misconfiguration_is_a_config_error():
    with pytest.raises(ConfigError, match="LEADER360V_LLM_BASE_URL"):
        OpenAIVerifier("", "m")


def test_same_object_question(endpoint):
    img = np.zeros((48, 64, 3), np.uint8)
    endpoint.script = [("answer", '{"same": true, "confidence": 0.8}')]
    v = verifier(endpoint)
    assert v.same_object(img, img) == (True, None)
    body = endpoint.requests[-1]["body"]
    assert "same object" in body["messages"][0]["content"] and len(body["messages"][1]["content"]) == 3
    endpoint.script = [("answer", '{"same": "maybe"}')]
    same, err = v.same_object(img, img)
    assert same is None and "true or false" in err
    endpoint.script = [("status", 500)]
    same, err = verifier(endpoint, max_retries=0).same_object(img, img)
    assert same is None and "HTTP 500" in err


# -- issue 12: credentials go only where the deployment allows -------------------------------------

SECRETS = {"LEADER360V_S3_SECRET_KEY": "s3-secret-d41d8c", "LEADER360V_LLM_API_KEY": "llm-key-9f86d0"}


def _deployment(monkeypatch, allowed: list[str] | None = None, own: str | None = None):
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("LEADER360V_LLM_BASE_URL", raising=False)
    monkeypatch.delenv("LEADER360V_LLM_ALLOWED_ENDPOINTS", raising=False)
    if own:
        monkeypatch.setenv("LEADER360V_LLM_BASE_URL", own)
    if allowed:
        monkeypatch.setenv("LEADER360V_LLM_ALLOWED_ENDPOINTS", ",".join(allowed))


def _sent_secrets(endpoint) -> list[str]:
    return [r["auth"] for r in endpoint.requests if r["auth"]]


def test_a_setting_cannot_send_a_credential_to_an_address_the_deployment_did_not_allow(endpoint, monkeypatch):
    """The attack of issue 12, in process: every way a configuration arrives is refused (exit 2)."""
    from tasks.backends.llm_verifier import build_openai_verifier as build_verifier
    from tasks.config import PipelineConfig

    _deployment(monkeypatch, own="http://vllm.internal:8000/v1")
    attack = {"verify.verifier": "openai", "verify.llm_base_url": endpoint.url,
              "verify.llm_api_key_env": "LEADER360V_S3_SECRET_KEY"}
    with pytest.raises(ConfigError) as info:
        PipelineConfig().with_overrides(attack)
    assert info.value.exit_code == 2
    assert "llm_api_key_env" in str(info.value) and "llm_base_url" in str(info.value)
    # each half alone is refused too
    with pytest.raises(ConfigError, match="not an endpoint this deployment allows"):
        PipelineConfig().with_overrides({"verify.llm_base_url": endpoint.url})
    with pytest.raises(ConfigError, match="always read from .LEADER360V_LLM_API_KEY"):
        PipelineConfig().with_overrides({"verify.llm_api_key_env": "LEADER360V_S3_SECRET_KEY"})
    # a prefix of an allowed endpoint is not allowed (no prefix matching)
    with pytest.raises(ConfigError):
        PipelineConfig().with_overrides({"verify.llm_base_url": "http://vllm.internal:8000/v1.attacker.example"})
    # a recorded run configuration edited in the store is checked when a pod reloads it
    with pytest.raises(ConfigError):
        PipelineConfig.from_dict({"verify": {"verifier": "openai", "llm_base_url": endpoint.url}})
    # and a verifier built from a configuration made before the deployment changed checks again
    monkeypatch.setenv("LEADER360V_LLM_ALLOWED_ENDPOINTS", endpoint.url)
    cfg = PipelineConfig().with_overrides({"verify.verifier": "openai", "verify.llm_base_url": endpoint.url})
    monkeypatch.delenv("LEADER360V_LLM_ALLOWED_ENDPOINTS")
    with pytest.raises(ConfigError, match="not an endpoint this deployment allows"):
        build_verifier(cfg)
    assert endpoint.requests == []


def test_cli_refuses_the_attack_before_any_work_and_nothing_reaches_the_listener(endpoint, tmp_path):
    """`python -m tasks label ... --set ...` and `--config` as a user runs them: exit 2, no request."""
    import os
    import subprocess
    import sys

    import yaml

    env = {**os.environ, **SECRETS, "LEADER360V_LLM_BASE_URL": "http://vllm.internal:8000/v1"}
    env.pop("LEADER360V_LLM_ALLOWED_ENDPOINTS", None)
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not decoded: the configuration is refused first")
    cfg_file = tmp_path / "attack.yaml"
    cfg_file.write_text(yaml.safe_dump({"verify": {"verifier": "openai", "llm_base_url": endpoint.url,
                                                   "llm_api_key_env": "LEADER360V_S3_SECRET_KEY"}}))
    runs = [
        ["label", str(video), "--out", str(tmp_path / "out"), "--set", "verify.verifier=openai",
         "--set", f"verify.llm_base_url={endpoint.url}", "--set", "verify.llm_api_key_env=LEADER360V_S3_SECRET_KEY"],
        ["label", str(video), "--out", str(tmp_path / "out"), "--config", str(cfg_file)],
        ["verify", "--video-id", "0123456789abcdef", "--store", str(tmp_path / "s"), "--config", str(cfg_file)],
    ]
    for args in runs:
        p = subprocess.run([sys.executable, "-m", "tasks", *args], env=env, capture_output=True, text=True, timeout=120)
        assert p.returncode == 2, (args, p.stderr)
        assert "Traceback" not in p.stderr and "not an endpoint this deployment allows" in p.stderr
        assert SECRETS["LEADER360V_S3_SECRET_KEY"] not in p.stderr + p.stdout
    assert endpoint.requests == []
    assert not (tmp_path / "out" / ".store").exists()  # nothing stored, nothing labeled


def test_an_allowed_endpoint_gets_the_llm_key_and_only_it(endpoint, monkeypatch):
    from tasks.backends.llm_verifier import build_openai_verifier as build_verifier
    from tasks.config import PipelineConfig

    other = Endpoint()  # a second listener the deployment does not list
    try:
        _deployment(monkeypatch, own=other.url.replace("127.0.0.1", "localhost"), allowed=[endpoint.url])
        endpoint.script = [("answer", '{"label": "car", "thing_or_stuff": "thing", "confidence": 0.9}')]
        cfg = PipelineConfig().with_overrides({"verify.verifier": "openai", "verify.llm_base_url": endpoint.url + "/"})
        v = build_verifier(cfg)
        [a] = v.verify([req()])
        assert a.label == "car"
        assert _sent_secrets(endpoint) == ["Bearer " + SECRETS["LEADER360V_LLM_API_KEY"]]
        assert other.requests == []
        # with no endpoint configured the deployment's own is used (localhost != 127.0.0.1 as a
        # name, but it is the deployment's, so it is allowed and gets the key)
        v2 = build_verifier(PipelineConfig().with_overrides({"verify.verifier": "openai"}))
        other.script = [("answer", '{"label": "tree", "confidence": 0.6}')]
        [b] = v2.verify([req(seed=3)])
        assert b.label == "tree" and _sent_secrets(other) == ["Bearer " + SECRETS["LEADER360V_LLM_API_KEY"]]
    finally:
        other.server.shutdown()


def test_a_redirect_from_an_allowed_endpoint_does_not_carry_the_key(monkeypatch):
    """An allowed endpoint that answers 307 elsewhere: httpx must not follow with the header."""
    from http.server import BaseHTTPRequestHandler

    from tasks.backends.llm_verifier import build_openai_verifier as build_verifier
    from tasks.config import PipelineConfig

    target = Endpoint()
    target.script = [("answer", '{"label": "car", "confidence": 0.9}')]

    class Redirect(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(307)
            self.send_header("Location", target.url + "/chat/completions")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _deployment(monkeypatch, own=f"http://127.0.0.1:{server.server_address[1]}/v1")
        v = build_verifier(PipelineConfig().with_overrides({"verify.verifier": "openai", "verify.llm_max_retries": 0}))
        [a] = v.verify([req()])
        assert a.label == "unknown" and target.requests == []
    finally:
        server.shutdown()
        target.server.shutdown()

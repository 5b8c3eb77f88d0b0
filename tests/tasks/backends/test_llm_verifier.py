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
    with pytest.raises(ConfigError, match="llm_base_url"):
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

"""Label verifier backed by a VLM behind an OpenAI-compatible chat endpoint [M §1.2(d)].

vLLM and Ollama serve ``/v1/chat/completions`` with image inputs; the 2026 fork of the method
serves Qwen3-VL-8B that way. The model sees a distortion-corrected perspective view centred on
the mask and the masked crop, and must answer strict JSON
``{"label": <one vocabulary name or "unknown">, "thing_or_stuff": "thing"|"stuff", "confidence": 0..1}``.

Whatever goes wrong — a timeout, a refused connection, a 5xx after the retries, malformed JSON,
a label outside the closed vocabulary — the verdict is ``unknown`` with ``error`` saying why
(the QA stage flags it). It never raises for a bad answer and never invents a class: the
method's code appends unknown labels to its vocabulary; we do not [M §6 row 3].

Answers are cached by a hash of what was asked (model, prompt version, images, hypotheses), so
asking twice about the same crop costs one call.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import httpx
import numpy as np

from tasks.backends.protocols import Verdict, VerifyRequest
from tasks.deployment import llm_api_key, resolve_llm_endpoint
from tasks.errors import ConfigError
from tasks.vocabulary import UNKNOWN, Vocabulary, master

log = logging.getLogger(__name__)

PROMPT_VERSION = "2026-11-24.1"
_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
# The annotation checker's instruction (issue 15 §1): one actionable sentence, strict JSON.
COMMENT_PROMPT = ("You check video segmentation labels for a human annotator. You get the automatic finding and "
                  "images of the object or frame. Reply with JSON only: {\"comment\": \"<one sentence telling the "
                  "annotator what to check or fix, naming frames and track ids as given>\"}.")
COMMENT_MAX_CHARS = 300
SAME_OBJECT_PROMPT = (
    "You compare two views from a 360-degree video. The first shows an object at the previous frame; the "
    "second shows a region of the current frame that no label covers. Is that region the same object, seen "
    'again? Answer only with JSON: {"same": true or false, "confidence": <number between 0 and 1>}.'
)


def system_prompt(vocab: Vocabulary) -> str:
    names = ", ".join(vocab.names())
    return (
        "You label objects in 360-degree video frames. You get a perspective view centred on the object "
        "(the object is in the middle) and a crop showing only the object's pixels. Name the object with "
        "exactly one label from this closed list, or \"unknown\" if you are not sure (prefer unknown over an "
        f"incorrect label; never use a label that is not in the list): {names}. "
        'Answer only with JSON: {"label": "<label>", "thing_or_stuff": "thing" or "stuff", '
        '"confidence": <number between 0 and 1>}.'
    )


def _jpeg_data_url(rgb: np.ndarray, quality: int = 85) -> str:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("could not encode an image for the verifier")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


@dataclass
class VerifierStats:
    requests: int = 0
    calls: int = 0
    cache_hits: int = 0
    misses: int = 0          # lookups that had to be answered anew (the cache hit rate's other side)
    retries: int = 0
    failures: int = 0
    rejected_answers: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **kw: int) -> None:
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)

    def snapshot(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("requests", "calls", "cache_hits", "misses", "retries", "failures", "rejected_answers")}

    def since(self, before: dict[str, int]) -> dict:
        """What happened after ``before`` (a snapshot): backends live for the process, stages don't."""
        d = {k: v - before.get(k, 0) for k, v in self.snapshot().items()}
        looked_up = d["cache_hits"] + d["misses"]
        d["cache_hit_rate"] = round(d["cache_hits"] / looked_up, 4) if looked_up else None
        return d

    def to_json(self) -> dict:
        return self.since({})


class OpenAIVerifier:
    name = "openai"
    needs_images = True  # the stage renders a distortion-corrected view per mask for it

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        vocab: Vocabulary | None = None,
        temperature: float = 0.2,
        timeout_s: float = 30.0,
        max_retries: int = 3,
        max_workers: int = 8,
        backoff_s: float = 1.0,
        transport: httpx.BaseTransport | None = None,
    ):
        if not base_url:
            raise ConfigError("the openai verifier needs an endpoint: $LEADER360V_LLM_BASE_URL in the deployment "
                              "(e.g. http://vllm:8000/v1)")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.vocab = vocab or master()
        self.temperature = float(temperature)
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.max_workers = int(max_workers)
        self.backoff_s = float(backoff_s)
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        # never follow a redirect: the key would go to wherever the endpoint points (issue 12)
        self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(self.timeout_s), transport=transport,
                                    follow_redirects=False)
        self._cache: dict[str, Verdict] = {}
        self._cache_lock = threading.Lock()
        self._system = system_prompt(self.vocab)
        self.stats = VerifierStats()

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIVerifier(url={self.url!r}, model={self.model!r})"

    def close(self) -> None:
        self._client.close()

    # -- the verifier protocol ------------------------------------------------------------------
    def verify(self, requests: list[VerifyRequest]) -> list[Verdict]:
        if not requests:
            return []
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(requests))) as pool:
            return list(pool.map(self._verify_one, requests))

    def _key(self, r: VerifyRequest, body_images: list[str]) -> str:
        h = hashlib.sha256()
        h.update(f"{self.model}|{PROMPT_VERSION}|".encode())
        h.update((r.crop_hash or "").encode())
        for img in body_images:
            h.update(img.encode())
        for c in r.candidates:
            h.update(f"|{c.text}@{c.label_space}".encode())
        return h.hexdigest()

    def _verify_one(self, r: VerifyRequest) -> Verdict:
        self.stats.add(requests=1)
        images = [_jpeg_data_url(im) for im in (r.view, r.crop) if im is not None]
        if not images:
            return Verdict(UNKNOWN, 0.0, self.name, error="no image of the mask to show the model")
        key = self._key(r, images)
        with self._cache_lock:
            hit = self._cache.get(key)
        if hit is not None:
            self.stats.add(cache_hits=1)
            return hit
        self.stats.add(misses=1)
        hints = ", ".join(sorted({c.text for c in r.candidates}))
        user = [{"type": "text", "text": "What is the main object (only one) shown in the middle of the first image "
                                         "and alone in the second?" + (f" Other models suggested: {hints}." if hints else "")}]
        user += [{"type": "image_url", "image_url": {"url": u}} for u in images]
        body = {"model": self.model, "temperature": self.temperature, "max_tokens": 128,
                "response_format": {"type": "json_object"},
                "messages": [{"role": "system", "content": self._system}, {"role": "user", "content": user}]}
        content, error = self._call(body)
        verdict = self._parse(content) if error is None else Verdict(UNKNOWN, 0.0, self.name, error=error)
        if verdict.error and error is None:
            self.stats.add(rejected_answers=1)
        if error is None:  # a transport failure is not an answer: do not cache it
            with self._cache_lock:
                self._cache[key] = verdict
        return verdict

    def _call(self, body: dict) -> tuple[str | None, str | None]:
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.stats.add(retries=1)
                time.sleep(self.backoff_s * (2 ** (attempt - 1)) * (1 + 0.25 * random.random()))
            self.stats.add(calls=1)
            try:
                resp = self._client.post(self.url, json=body)
            except httpx.TimeoutException:
                last = f"no answer within {self.timeout_s:g} s"
                continue
            except httpx.TransportError as exc:
                last = f"cannot reach {self.url}: {exc.__class__.__name__}"
                continue
            if resp.status_code in _RETRY_STATUS:
                last = f"endpoint answered HTTP {resp.status_code}"
                continue
            if resp.status_code >= 400:
                self.stats.add(failures=1)
                hint = " (check the API key in $LEADER360V_LLM_API_KEY)" if resp.status_code in (401, 403) else ""
                return None, f"endpoint refused the request: HTTP {resp.status_code}{hint}"
            try:
                return resp.json()["choices"][0]["message"]["content"], None
            except (ValueError, KeyError, IndexError, TypeError):
                self.stats.add(failures=1)
                return None, "endpoint answer is not an OpenAI chat completion"
        self.stats.add(failures=1)
        return None, f"{last} after {self.max_retries + 1} attempts"

    def same_object(self, before: np.ndarray, now: np.ndarray) -> tuple[bool | None, str | None]:
        """The MCR "object retriever" question [M §1.3], asked only for regions the geometry cannot
        route. ``(answer, None)``, or ``(None, reason)`` when the model could not be used — the caller
        then keeps the geometric route."""
        self.stats.add(requests=1, misses=1)
        body = {"model": self.model, "temperature": self.temperature, "max_tokens": 64,
                "response_format": {"type": "json_object"},
                "messages": [{"role": "system", "content": SAME_OBJECT_PROMPT},
                             {"role": "user", "content": [
                                 {"type": "text", "text": "Previous frame, then current frame."},
                                 {"type": "image_url", "image_url": {"url": _jpeg_data_url(before)}},
                                 {"type": "image_url", "image_url": {"url": _jpeg_data_url(now)}}]}]}
        content, error = self._call(body)
        if error is not None:
            return None, error
        try:
            ans = json.loads((content or "").strip())
            same = ans["same"]
        except (ValueError, TypeError, KeyError):
            self.stats.add(rejected_answers=1)
            return None, "answer is not the JSON asked for"
        if not isinstance(same, bool):
            self.stats.add(rejected_answers=1)
            return None, "'same' is not true or false"
        return same, None

    def comment(self, instruction: str, images: list[np.ndarray]) -> tuple[str | None, str | None]:
        """A reviewer's comment on one flagged object or frame (the annotation checker, issue 15 §1):
        ``(text, None)``, or ``(None, reason)`` when the model could not be used or its answer is
        not the strict JSON asked for -- the caller then keeps its rule-based comment. Same
        endpoint, key handling, timeouts, retries and no-redirect rule as :meth:`verify`."""
        self.stats.add(requests=1, misses=1)
        user = [{"type": "text", "text": instruction}]
        user += [{"type": "image_url", "image_url": {"url": _jpeg_data_url(im)}} for im in images]
        body = {"model": self.model, "temperature": self.temperature, "max_tokens": 160,
                "response_format": {"type": "json_object"},
                "messages": [{"role": "system", "content": COMMENT_PROMPT}, {"role": "user", "content": user}]}
        content, error = self._call(body)
        if error is not None:
            return None, error
        try:
            text = json.loads((content or "").strip())["comment"]
        except (ValueError, TypeError, KeyError):
            self.stats.add(rejected_answers=1)
            return None, "answer is not the JSON asked for"
        if not isinstance(text, str) or not text.strip() or len(text) > COMMENT_MAX_CHARS:
            self.stats.add(rejected_answers=1)
            return None, f"'comment' is not a text of 1..{COMMENT_MAX_CHARS} characters"
        return " ".join(text.split()), None

    def _parse(self, content: str | None) -> Verdict:
        raw = (content or "").strip()
        try:
            text = raw
            if text.startswith("```"):  # some servers wrap JSON in a code fence despite json mode
                text = text.strip("`").split("\n", 1)[-1]
            ans = json.loads(text)
        except (ValueError, TypeError):
            return Verdict(UNKNOWN, 0.0, self.name, raw=raw[:200], error="answer is not JSON")
        if not isinstance(ans, dict) or "label" not in ans:
            return Verdict(UNKNOWN, 0.0, self.name, raw=raw[:200], error="answer has no 'label'")
        label = str(ans.get("label", "")).strip()
        try:
            conf = float(ans.get("confidence", 0.0))
        except (TypeError, ValueError):
            conf = 0.0
        conf = min(max(conf, 0.0), 1.0) if conf == conf else 0.0  # NaN -> 0
        if label.lower() == UNKNOWN:
            return Verdict(UNKNOWN, conf, self.name, raw=raw[:200], error="the model is not sure")
        name = self.vocab.canonical(label)
        if name is None:
            return Verdict(UNKNOWN, 0.0, self.name, raw=raw[:200], error=f"out of vocabulary: {label!r}")
        kind = "stuff" if self.vocab.is_stuff(name) else "thing"
        said = str(ans.get("thing_or_stuff", "")).lower()
        verdict = Verdict(name, round(conf, 4), self.name, thing_or_stuff=kind, raw=raw[:200])
        if said and said != kind:
            verdict.raw = f"{verdict.raw} (model said {said}; the vocabulary says {kind})"
        return verdict




def build_openai_verifier(config) -> OpenAIVerifier:
    """The verifier the deployment allows: its endpoint is the configured one only if the deployment
    lists it (checked again here, in the process that sends the key), else the deployment's own;
    the key always comes from $LEADER360V_LLM_API_KEY (tasks/deployment.py, issue 12)."""
    vc = config.verify
    url = resolve_llm_endpoint(vc.llm_base_url)
    return OpenAIVerifier(url, vc.llm_model, api_key=llm_api_key(), temperature=vc.llm_temperature,
                          timeout_s=vc.llm_timeout_s, max_retries=vc.llm_max_retries, max_workers=vc.llm_max_workers)

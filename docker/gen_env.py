"""Print a docker/.env for the local compose stack: fresh random passwords and keys.

    python3 docker/gen_env.py > docker/.env

Standard library only, so it runs before anything is installed. Never commit the output.
"""

from __future__ import annotations

import base64
import secrets


def main() -> None:
    values = {
        "POSTGRES_PASSWORD": secrets.token_urlsafe(24),
        "MINIO_ROOT_USER": "leader360v-" + secrets.token_hex(4),
        "MINIO_ROOT_PASSWORD": secrets.token_urlsafe(32),
        # Fernet needs 32 url-safe base64-encoded bytes
        "AIRFLOW_FERNET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "AIRFLOW_API_SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW_JWT_SECRET": secrets.token_urlsafe(32),
    }
    for name, value in values.items():
        print(f"{name}={value}")


if __name__ == "__main__":
    main()

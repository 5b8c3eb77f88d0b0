"""Create the object-store buckets of the local stack (compose service ``minio-init``).

Runs in the Airflow image, which has the ``minio`` client, so the stack needs no ``mc`` image.
Waits for the server, then creates the bucket of ``LEADER360V_STORE`` (``s3://bucket[/...]``)
and any bucket named on the command line; existing buckets are left alone, so it is safe to
run on every ``docker compose up``.
"""

from __future__ import annotations

import os
import sys
import time
from urllib.parse import urlsplit

from minio import Minio


def main(argv: list[str]) -> int:
    endpoint = urlsplit(os.environ["LEADER360V_S3_ENDPOINT"])
    client = Minio(endpoint=endpoint.netloc, access_key=os.environ["LEADER360V_S3_ACCESS_KEY"],
                   secret_key=os.environ["LEADER360V_S3_SECRET_KEY"], secure=endpoint.scheme == "https")
    store = urlsplit(os.environ["LEADER360V_STORE"])
    if store.scheme != "s3":
        print(f"LEADER360V_STORE={os.environ['LEADER360V_STORE']!r} is not s3://bucket", file=sys.stderr)
        return 2
    buckets = [store.netloc, *argv]
    deadline = time.monotonic() + 120
    while True:
        try:
            client.list_buckets()
            break
        except Exception as exc:  # connection refused while the server starts
            if time.monotonic() > deadline:
                print(f"object store at {endpoint.netloc} not reachable: {exc}", file=sys.stderr)
                return 1
            time.sleep(2)
    for bucket in buckets:
        if client.bucket_exists(bucket_name=bucket):
            print(f"bucket {bucket} exists")
        else:
            client.make_bucket(bucket_name=bucket)
            print(f"bucket {bucket} created")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

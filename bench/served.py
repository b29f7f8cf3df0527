"""The one in-process endpoint every server bench uses: uvicorn on a loopback port, in a
thread, and a boto3 client of it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

ACCESS_KEY, SECRET = "bench", "bench-secret"


@contextmanager
def served_client(engine) -> Iterator:
    """A boto3 DynamoDB client of ``engine`` served by uvicorn in a thread of this process
    (no retries, so a failure shows); the server stops when the block ends."""
    import boto3
    import uvicorn
    from botocore.config import Config

    from engine.server import create_app

    app = create_app(engine, credentials={ACCESS_KEY: SECRET})
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:  # uvicorn offers no event to wait on
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield boto3.client(
            "dynamodb", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET,
            config=Config(retries={"max_attempts": 1}),
        )
    finally:
        server.should_exit = True
        thread.join(timeout=10)

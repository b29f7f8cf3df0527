"""The DynamoDB-compatible HTTP endpoint (SPEC §12) — the only package that knows HTTP.

``serve(...)`` runs it; ``create_app(engine, ...)`` gives the ASGI app for embedding.
Modules: ``sigv4`` (request signatures), ``operations`` (one module per resource: tables,
items, queries, batches, backups; expressions come from :mod:`engine.expressions`),
``app`` (ASGI), ``connections`` (HTTP connection limits), ``main`` (command line).
"""

from engine.server.app import DynamoDBApp, create_app
from engine.server.main import add_serve_arguments, run_from_args, serve

__all__ = ["DynamoDBApp", "create_app", "serve", "add_serve_arguments", "run_from_args"]

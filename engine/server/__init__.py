"""The DynamoDB-compatible HTTP endpoint (SPEC §12) — the only package that knows HTTP.

``serve(...)`` runs it; ``create_app(engine, ...)`` gives the ASGI app for embedding.
Modules: ``expressions`` (Update/Condition/KeyCondition/Projection expressions),
``sigv4`` (request signatures), ``operations`` (one function per operation), ``app`` (ASGI), ``main`` (command line).
"""

from engine.server.app import DynamoDBApp, create_app
from engine.server.main import add_serve_arguments, run_from_args, serve

__all__ = ["DynamoDBApp", "create_app", "serve", "add_serve_arguments", "run_from_args"]

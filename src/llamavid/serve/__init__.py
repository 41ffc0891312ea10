"""`llamavid serve`: one process, one engine, an OpenAI-compatible HTTP API and the web demo.

The original LLaMA-VID served its demo with a controller, model workers and a Gradio 3 page speaking a private
NUL-delimited protocol, and answered requests one at a time. Here one FastAPI app holds one
engine (model, processor, feature cache); the API follows the shapes of vLLM's OpenAI-compatible server so
existing clients work unchanged, requests that arrive together are batched into one left-padded generation, and
the Gradio page is mounted on the same app and goes through the same scheduler.

Modules: `settings` (limits and switches), `errors` (the JSON error shape), `schemas` (request parsing and
response bodies), `fetch` (URLs -> bytes, with limits), `server` (what routes and page share: encoding through
the engine's media encoder, the prompt builder, submitting jobs), `scheduler` (batching on the model's
generator), `logs` (one line a request), `app` (routes), `web` (the Gradio page), `limits` (the body limit),
`launch` (a server as a child process). The command is `llamavid.cli.serve`.
"""

from __future__ import annotations

from .settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]


def __getattr__(name):
    if name == "create_app":  # FastAPI is an optional extra: import it only when an app is built
        from .app import create_app

        return create_app
    raise AttributeError(name)

"""vaekit serve: the HTTP API."""
from __future__ import annotations

from pathlib import Path

import click

from ..distributed import resolve_device
from ..errors import VaekitError

from .base import CONTEXT, cli, device_option

@cli.command(context_settings=CONTEXT)
@click.argument("runs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--model", "named", multiple=True, metavar="NAME=RUN",
              help="Serve RUN under NAME (repeatable); plain RUN arguments are named after their folder.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 opens the server to the network (a warning is printed).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--api-key", envvar="VAEKIT_API_KEY", default=None,
              help="Require 'Authorization: Bearer KEY' on /v1 endpoints (or set VAEKIT_API_KEY).")
@click.option("--max-text-chars", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Longest text a request may send.")
@click.option("--max-n", type=click.IntRange(min=1), default=50, show_default=True,
              help="Most variations or samples per request.")
@click.option("--max-body-kb", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Largest request body, in kilobytes.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="Seconds a request may compute before it gets 504.")
@click.option("--body-timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Seconds a client has to send its request body before it gets 408 (a stalled client holds no "
                   "connection longer).")
@click.option("--similarity-model", default=None,
              help="Sentence-transformers model for similarity to the input (default: bundled all-MiniLM-L6-v2).")
@device_option("cpu", "Where the models run: the CPU unless asked (the latencies measured for vaekit are the "
                      "CPU's); auto takes a CUDA GPU, then Apple MPS, then the CPU.")
def serve(runs, named, host, port, api_key, max_text_chars, max_n, max_body_kb, timeout, body_timeout, similarity_model,
          device):
    """Serve trained models over HTTP (FastAPI): POST /v1/vary, /v1/sample, /v1/interpolate, /v1/encode,
    /v1/score, /v1/decode; GET /v1/models, /healthz; API docs at /docs; a web page at /.

    \b
    Examples:
      vaekit serve runs/headlines
      vaekit serve --model news=runs/headlines --model digits=runs/mnist --port 8080 --api-key s3cret
    """
    from ..serve import Limits, create_app

    specs = {}
    for run in runs:
        specs[run.resolve().name] = run
    for item in named:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise VaekitError(f"--model {item}: write NAME=RUN")
        specs[name] = Path(path)
    if not specs:
        raise VaekitError("give a run folder to serve (vaekit serve RUN, or --model NAME=RUN)")
    try:
        import uvicorn
    except ImportError:
        raise VaekitError("vaekit serve needs FastAPI and uvicorn: pip install 'vaekit[serve]'") from None
    import socket

    try:  # before the models load: uvicorn would print nothing useful and exit 3 once "serving ..." was said
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise VaekitError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror or exc}); is another "
                          "server using it? Give another --port") from None
    limits = Limits(max_text_chars=max_text_chars, max_n=max_n, max_body_bytes=max_body_kb * 1000, timeout_s=timeout,
                    body_timeout_s=body_timeout)
    app = create_app(specs, limits, api_key=api_key, similarity_model=similarity_model, device=resolve_device(device))
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: listening on {host}: anyone who can reach this machine can use the models"
                   + ("" if api_key else "; consider --api-key"), err=True)
    click.echo(f"serving {', '.join(specs)} at http://{host}:{port}/ (API docs at /docs)")
    uvicorn.run(app, host=host, port=port, log_level="warning")

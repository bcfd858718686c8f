"""``spotdet serve``: the on-demand HTTP detection service."""

from __future__ import annotations

import logging
import signal
from typing import List, Optional

import typer

from spotdet.cli.main import app, err, handle_errors
from spotdet.cli.options import GpuOpt, BackendOpt, ClassesOpt, ConfOpt, DeviceOpt, IouOpt, MaxDetOpt, ThreadsOpt
from spotdet.options import DEFAULT_MAX_PIXELS


@app.command()
@handle_errors
def serve(
    model: str = typer.Option(..., "--model", "-m", help="Zoo name, variant name or path to an .onnx file."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback unless told otherwise)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    precision: Optional[str] = typer.Option(None, "--precision", help="Serve a variant made by `spotdet optimize`."),
    max_batch: int = typer.Option(8, "--max-batch", min=1, help="Most images per model call."),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", min=0, help="Longest wait to fill a batch."),
    queue_size: int = typer.Option(64, "--queue-size", min=1, help="Images that may wait; beyond, 503."),
    model_workers: Optional[int] = typer.Option(
        None, "--model-workers", min=1,
        help="Batches run at once (concurrent session.run). Default: one per core with 1 thread each on CPU, 4 on GPU."),
    timeout: float = typer.Option(30.0, "--timeout", min=0.001, help="Per-request timeout in seconds."),
    idle_unload: Optional[float] = typer.Option(None, "--idle-unload", min=0.001,
                                                help="Release the model after S idle seconds (scale to zero)."),
    warm_window: Optional[List[str]] = typer.Option(None, "--warm-window",
                                                    help='Keep warm inside e.g. "mon-fri 09:00-18:00" (repeatable).'),
    timezone: Optional[str] = typer.Option(None, "--timezone", help="IANA zone for windows (default: local)."),
    price_per_hour: Optional[float] = typer.Option(None, "--price-per-hour", min=0, help="USD per hour."),
    instance: Optional[str] = typer.Option(None, "--instance", help="Instance name from the price table."),
    prices: Optional[str] = typer.Option(None, "--prices", help="Price table file (default: the shipped one)."),
    max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", min=0.001),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", min=1, help="Refuse larger images (bombs)."),
    max_request_mb: float = typer.Option(
        256.0, "--max-request-mb", min=0.001,
        help="Memory one request may hold (body + decoded images + network inputs); beyond, 413."),
    max_inflight_mb: float = typer.Option(
        512.0, "--max-inflight-mb", min=0.001,
        help="Memory all requests in flight may hold together; beyond, 503 with Retry-After."),
    max_connections: int = typer.Option(256, "--max-connections", min=1,
                                        help="Open connections at once; beyond, 503 and the connection is closed."),
    header_timeout: float = typer.Option(10.0, "--header-timeout", min=0.001,
                                         help="Seconds a client has to send a request's headers; then closed."),
    body_timeout: float = typer.Option(10.0, "--body-timeout", min=0.001,
                                       help="Longest wait for the next part of a request body; then 408, closed."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="SPOTDET_API_KEY", show_envvar=True,
                                          help="Require this key (X-API-Key or Bearer)."),
    lazy: bool = typer.Option(False, "--lazy", help="Do not load the model until the first request."),
    monitor_db: Optional[str] = typer.Option(None, "--monitor-db", help="Log utilization samples to this SQLite file."),
    ray: bool = typer.Option(False, "--ray", help="Serve through Ray Serve: model replicas autoscale between "
                                                  "--min-replicas and --max-replicas (docs/ray-serve.md)."),
    min_replicas: Optional[int] = typer.Option(
        None, "--min-replicas", min=0,
        help="With --ray: fewest replicas; 0 ends every replica process when idle. "
             "Default: 0 with --idle-unload, else 1."),
    max_replicas: int = typer.Option(1, "--max-replicas", min=1, help="With --ray: most replicas under load."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address",
                                              help="With --ray: an existing cluster (auto, ray://host:10001); "
                                                   "default: start a Ray head on this machine."),
    conf: float = ConfOpt,
    iou: float = IouOpt,
    max_det: int = MaxDetOpt,
    classes: Optional[str] = ClassesOpt,
    device: str = DeviceOpt,
    gpu: Optional[int] = GpuOpt,  # exported as $SPOTDET_GPU by its callback, read by the backend
    backend: str = BackendOpt,
    threads: Optional[int] = ThreadsOpt,
    log_level: str = typer.Option("info", "--log-level", help="critical | error | warning | info | debug"),
) -> None:
    """Serve MODEL over HTTP: POST /predict, /predict/batch; GET /models, /healthz, /readyz, /metrics.

    --conf, --iou, --max-det and --classes are the defaults; a request's query parameters override them."""
    from spotdet.extras import require

    require("serve", "spotdet serve")
    import uvicorn

    from spotdet.cost.prices import resolve_price
    from spotdet.options import DetectOptions
    from spotdet.serve.app import create_app
    from spotdet.serve.config import ServeConfig
    from spotdet.serve.connections import uvicorn_options

    price, source = resolve_price(price_per_hour, instance, prices)
    config = ServeConfig(
        model=model, precision=precision, device=device, backend=backend, threads=threads, host=host, port=port,
        options=DetectOptions.create(conf=conf, iou=iou, max_det=max_det, classes=classes),
        max_batch=max_batch, max_wait_ms=max_wait_ms, queue_size=queue_size, model_workers=model_workers,
        request_timeout_s=timeout,
        idle_unload_s=idle_unload, warm_windows=list(warm_window or []), timezone=timezone,
        price_per_hour=price or 0.0, price_source=source or "none", max_upload_mb=max_upload_mb,
        max_pixels=max_pixels, max_request_mb=max_request_mb, max_inflight_mb=max_inflight_mb,
        max_connections=max_connections, header_timeout_s=header_timeout, body_timeout_s=body_timeout,
        api_key=api_key, preload=not lazy, monitor_db=monitor_db,
        ray=ray, min_replicas=min_replicas, max_replicas=max_replicas, ray_address=ray_address,
    )
    if ray:
        _serve_on_ray(config, log_level)
        return
    application = create_app(config)
    logging.getLogger("spotdet").setLevel(log_level.upper())
    err.print(f"spotdet serving {application.state.service.host.card.name} on http://{host}:{port} "
              f"(price: {config.price_source}; auth: {'API key' if config.api_key else 'none'})", highlight=False)
    # SIGTERM is how a service is asked to stop: uvicorn drains (every queued request is answered), puts the
    # previous handler back and raises the signal again; this handler makes that a clean exit 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(application, host=host, port=port, log_level=log_level,
                timeout_graceful_shutdown=int(timeout) + 5,
                **uvicorn_options(config, application.state.service.metrics))


def _serve_on_ray(config, log_level: str) -> None:
    """``--ray``: deploy on Ray Serve (a local head unless --ray-address) and serve until SIGTERM / Ctrl-C."""
    from spotdet.errors import MissingExtraError
    from spotdet.extras import install_hint, require

    require("ray", "spotdet serve --ray")
    try:
        from spotdet.serve.ray_app import serve_forever
    except ImportError as exc:  # ray without its serve extra (grpc, ...)
        raise MissingExtraError(f"spotdet serve --ray needs Ray Serve ({exc}); {install_hint('ray')} and "
                                "pip install 'ray[serve]'", "ray") from None
    logging.getLogger("spotdet").setLevel(log_level.upper())
    where = config.ray_address or "a local Ray head"
    err.print(f"spotdet serving {config.model} through Ray Serve on http://{config.host}:{config.port} ({where}; "
              f"replicas {config.replica_floor}-{config.max_replicas}; price: {config.price_source})",
              highlight=False)
    serve_forever(config)


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)

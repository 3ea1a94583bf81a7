"""`dfpanel serve`'s web application: uploads become jobs that background workers analyse.

Pages: GET / (drop a video; this browser's own videos), GET /jobs/{id} (live progress, then the
report), POST /detect (the no-JavaScript form), POST /jobs/{id}/delete, GET|POST /login, POST /logout.
API (OpenAPI at /openapi.json, docs at /docs): POST /api/v1/jobs (multipart `file`) -> 202
{id, status}; GET /api/v1/jobs (this visitor's jobs); GET /api/v1/jobs/{id} (status, progress and,
when done, the report); GET /api/v1/jobs/{id}/report.html and report.json; DELETE /api/v1/jobs/{id};
GET /healthz.

The web layer holds no analysis logic and no model: `JobRunner` hands each job to an analysis process
(`analysers.py`) that runs `PanelDetector.analyse`, the code `dfpanel detect` runs. Who may call what
is `security.Guard`'s and TrustedHostMiddleware's business.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at runtime.
import asyncio
import contextlib
import errno
import hashlib
import json
import logging
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from python_multipart.exceptions import MultipartParseError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect
from starlette.staticfiles import StaticFiles

from dfpanel.detect.discovery import NotAVideo, probe_video
from dfpanel.serve import page
from dfpanel.serve.analysers import ProcessAnalyser, ThreadAnalyser
from dfpanel.serve.jobs import Job, JobStore
from dfpanel.serve.security import (
    AUTH_COOKIE,
    VISITOR_COOKIE,
    WRONG_TOKEN_DELAY,
    Guard,
    owner_of,
    safe_next,
    session_value,
)
from dfpanel.serve.upload import (
    MULTIPART_SLACK,
    Refused,
    content_length,
    receive_file,
    safe_name,
)
from dfpanel.serve.worker import JobRunner, QueueFull, load_thumbnails

log = logging.getLogger(__name__)
COOKIE_AGE = 365 * 86400


@dataclass
class ServeConfig:
    data_dir: Path = Path("dfpanel-serve")
    max_upload_mb: int = 500
    workers: int = 1
    max_queue: int = 32
    keep_uploads: bool = False
    retention_s: Optional[float] = 7 * 86400  # None: keep reports until deleted
    retention_text: Optional[str] = "7d"  # as the user wrote it, for the page
    token: Optional[str] = None
    # Host header values accepted (DNS rebinding); None: no check (only for tests and embedding)
    allowed_hosts: Optional[list] = None
    min_free_mb: int = 1024  # disk space left free after an upload
    max_per_client: int = 0  # jobs one client may have waiting or running at once (0: no cap)
    start_workers: bool = True  # False: jobs are accepted and queued but not analysed (tests)


def create_app(source, config: ServeConfig) -> FastAPI:
    """`source`: a DetectorFactory (each worker is a child process that builds its own detector: what
    `dfpanel serve` does) or a loaded PanelDetector (workers are threads sharing it)."""
    cfg = config
    store = JobStore(cfg.data_dir)
    if hasattr(source, "build"):  # a DetectorFactory (or a test's stand-in for one)
        threads = max(1, (os.cpu_count() or 1) // cfg.workers)
        analysers = [ProcessAnalyser(source, threads=threads) for _ in range(cfg.workers)]
    else:
        analysers = [ThreadAnalyser(source) for _ in range(cfg.workers)]
    runner = JobRunner(store, analysers, max_queue=cfg.max_queue, keep_uploads=cfg.keep_uploads,
                       retention_s=cfg.retention_s)
    limit = cfg.max_upload_mb << 20

    app = FastAPI(title="dfpanel", version="1", docs_url=None, redoc_url=None,
                  description="Upload a video, poll its job, read the panel's report. With a token, send "
                              "`Authorization: Bearer <token>` on every call.")
    app.state.store, app.state.runner, app.state.config = store, runner, cfg

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        if cfg.start_workers:
            runner.start()  # `dfpanel serve` has started it already, before listening
        else:
            store.load()
            runner.info = analysers[0].start()
        yield
        runner.stop()

    app.router.lifespan_context = lifespan

    # ---- helpers -----------------------------------------------------------------------------
    def nonce(request: Request) -> str:
        return request.scope.get("state", {}).get("nonce", "")

    def visitor(request: Request) -> Optional[str]:
        return request.cookies.get(VISITOR_COOKIE) or None

    def browser_visitor(request: Request) -> tuple[str, bool]:
        """This browser's visitor id (a random cookie: the key to the list of its own jobs), and whether
        it is new (then `remember` sets it on the answer)."""
        v = visitor(request)
        return (v, False) if v else (secrets.token_urlsafe(24), True)

    def remember(request: Request, response: Response, visitor_id: str) -> Response:
        response.set_cookie(VISITOR_COOKIE, visitor_id, max_age=COOKIE_AGE, httponly=True, samesite="lax", path="/",
                            secure=request.url.scheme == "https")  # https: behind a TLS proxy (X-Forwarded-Proto)
        return response

    def job_for(request: Request, job_id: str) -> Job:
        """The job, if this caller may see it: its browser made it, or it was made without a cookie
        (an API client: the id alone is the key). Otherwise 404, as for an id that does not exist."""
        job = store.get(job_id)
        if job is None or (job.owner is not None and job.owner != owner_of(visitor(request))):
            raise Refused(404, "no such job (it may have been deleted or have expired)")
        return job

    def public(job: Job) -> dict:
        return job.public(runner.position(job.id))

    def report_of(job: Job) -> Optional[dict]:
        try:
            return json.loads((store.folder(job.id) / "report.json").read_text())
        except (OSError, ValueError):
            return None

    def client_of(request: Request, owner: Optional[str]) -> str:
        """Who sent a request, for the per-client cap: the browser (visitor cookie), else the address
        (behind a proxy, the one it forwards). Kept hashed."""
        if owner:
            return owner
        host = request.client.host if request.client else "unknown"
        return "addr:" + hashlib.sha256(host.encode()).hexdigest()[:24]

    async def accept_upload(request: Request, owner: Optional[str]) -> Job:
        """Stream an upload into a new job and queue it; Refused with the reason otherwise."""
        length = content_length(request.headers)
        if length is not None and length > limit + MULTIPART_SLACK:
            raise Refused(413, f"the file is larger than the limit of {cfg.max_upload_mb} MB")
        free = shutil.disk_usage(store.root).free
        if free - (length or limit) < cfg.min_free_mb << 20:
            raise Refused(507, "the server's disk is nearly full; try again later or ask its operator to free space")
        client = client_of(request, owner)
        if cfg.max_per_client and store.active_for(client) >= cfg.max_per_client:
            # no await between this check and store.new below: concurrent uploads cannot both pass it
            raise Refused(429, f"you have {cfg.max_per_client} videos waiting or being analysed, the most one "
                               "client may have at once; upload more when one is done",
                          {"Retry-After": str(runner.retry_after())})
        try:
            runner.reserve()
        except QueueFull as exc:
            raise Refused(503, str(exc), {"Retry-After": str(exc.retry_after)}) from None
        job = store.new("upload", owner, client)
        queued = False
        try:
            def open_file(filename: str):
                store.update(job, persist=False, name=safe_name(filename))
                return open(store.upload_path(job), "wb")

            try:
                writer = await receive_file(request.stream(), request.headers.get("content-type"), limit, open_file)
            except MultipartParseError:
                raise Refused(400, "the upload is not a well-formed multipart form") from None
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise Refused(507, "the server's disk is full; try again later") from None
                raise
            try:
                await run_in_threadpool(probe_video, store.upload_path(job))
            except NotAVideo as exc:
                raise Refused(415, f"{job.name} is not a video we can read ({exc}); upload a video file") from None
            store.update(job, size_bytes=writer.size)
            runner.submit(job)
            queued = True
            return job
        except ClientDisconnect:
            raise Refused(400, "the upload was interrupted") from None
        finally:
            if not queued:
                runner.release()
                store.delete(job.id)

    # ---- errors: one line, never a traceback -------------------------------------------------
    def wants_html(request: Request) -> bool:
        return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")

    def error_response(request: Request, status: int, message: str, headers: Optional[dict] = None) -> Response:
        if wants_html(request):
            return HTMLResponse(page.render_error(status, message, nonce(request)), status_code=status, headers=headers)
        return JSONResponse({"detail": message}, status_code=status, headers=headers)

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> Response:
        return error_response(request, exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return error_response(request, exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return error_response(request, 422, "the request is not what this endpoint takes; see /docs")

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> Response:
        log.error("serve: internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(request, 500, "internal error; the server's log has the details")

    # ---- pages -------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index(request: Request) -> HTMLResponse:
        vid, new = browser_visitor(request)
        mine = [public(j) for j in store.owned_by(owner_of(vid))]
        info = runner.info
        note = "fitted panel" if info.get("panel_fitted") else "equal-weights panel"
        html = page.render_index(info.get("specialists", []), note, info.get("training_data"), mine,
                                 nonce(request), cfg.max_upload_mb, cfg.retention_text if cfg.retention_s else None,
                                 logout=bool(cfg.token))
        return remember(request, HTMLResponse(html), vid) if new else HTMLResponse(html)

    @app.post("/detect", include_in_schema=False)
    async def form_detect(request: Request) -> Response:
        vid, new = browser_visitor(request)
        job = await accept_upload(request, owner_of(vid))
        resp = RedirectResponse(f"jobs/{job.id}", status_code=303)
        return remember(request, resp, vid) if new else resp

    @app.get("/jobs/{job_id}", response_class=HTMLResponse, include_in_schema=False)
    def job_page(request: Request, job_id: str) -> HTMLResponse:
        job = job_for(request, job_id)
        pub = public(job)
        if job.status == "done":
            report = report_of(job)
            if report is not None:
                return HTMLResponse(page.render_job_report(pub, report, load_thumbnails(store.folder(job.id))))
        if job.status in ("done", "failed"):
            return HTMLResponse(page.render_job_failed(pub, nonce(request)))
        return HTMLResponse(page.render_job_progress(pub, nonce(request)))

    @app.post("/jobs/{job_id}/delete", include_in_schema=False)
    def job_delete_form(request: Request, job_id: str) -> RedirectResponse:
        store.delete(job_for(request, job_id).id)
        return RedirectResponse("../../", status_code=303)

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request, next: str = "/") -> HTMLResponse:
        return HTMLResponse(page.render_login(nonce(request), safe_next(next)))

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=4, max_part_size=4096)
        given = str(form.get("token") or "")
        target = safe_next(str(form.get("next") or "/"))
        if not cfg.token:
            return RedirectResponse(target, status_code=303)
        if not secrets.compare_digest(given.encode(), cfg.token.encode()):
            await asyncio.sleep(WRONG_TOKEN_DELAY)  # slows guessing down; other requests go on meanwhile
            return HTMLResponse(page.render_login(nonce(request), target, wrong=True), status_code=401)
        resp = RedirectResponse(target, status_code=303)
        resp.set_cookie(AUTH_COOKIE, session_value(cfg.token), httponly=True, samesite="lax", path="/",
                        secure=request.url.scheme == "https")
        return resp

    @app.post("/logout", include_in_schema=False)
    def logout() -> RedirectResponse:
        resp = RedirectResponse("login", status_code=303)
        resp.delete_cookie(AUTH_COOKIE, path="/")
        return resp

    # ---- API ---------------------------------------------------------------------------------
    upload_body = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary", "description": "the video"}}}}}}}

    @app.post("/api/v1/jobs", status_code=202, openapi_extra=upload_body, tags=["jobs"],
              responses={413: {"description": "larger than the limit"}, 415: {"description": "not a video"},
                         429: {"description": "this client's cap reached; see Retry-After"},
                         503: {"description": "queue full; see Retry-After"}, 507: {"description": "disk full"}})
    async def create_job(request: Request) -> JSONResponse:
        """Upload a video (multipart field `file`); it is queued for analysis. Poll the job's URL."""
        # The page's script sends the browser's visitor cookie: the job is tied to that browser. An API
        # client without cookies owns nothing: the job's id is its only key.
        job = await accept_upload(request, owner_of(visitor(request)))
        body = dict(public(job), url=f"/api/v1/jobs/{job.id}", page=f"/jobs/{job.id}")
        return JSONResponse(body, status_code=202, headers={"location": f"/api/v1/jobs/{job.id}"})

    @app.get("/api/v1/jobs", tags=["jobs"])
    def list_jobs(request: Request) -> dict:
        """This browser's own jobs (by its visitor cookie), newest first. Never anyone else's."""
        return {"jobs": [public(j) for j in store.owned_by(owner_of(visitor(request)))]}

    @app.get("/api/v1/jobs/{job_id}", tags=["jobs"])
    def get_job(request: Request, job_id: str) -> dict:
        """Status (queued, running, done, failed), stage and progress; when done, the report."""
        job = job_for(request, job_id)
        out = public(job)
        if job.status == "done":
            out["report"] = report_of(job)
        return out

    @app.get("/api/v1/jobs/{job_id}/report.html", response_class=HTMLResponse, tags=["jobs"])
    def get_report_html(request: Request, job_id: str) -> FileResponse:
        """The report as one self-contained page (what `dfpanel detect --report` writes)."""
        return FileResponse(report_file(request, job_id, "report.html"), media_type="text/html")

    @app.get("/api/v1/jobs/{job_id}/report.json", tags=["jobs"])
    def get_report_json(request: Request, job_id: str) -> FileResponse:
        return FileResponse(report_file(request, job_id, "report.json"), media_type="application/json")

    def report_file(request: Request, job_id: str, name: str) -> Path:
        job = job_for(request, job_id)
        path = store.folder(job.id) / name
        if job.status != "done" or not path.is_file():
            raise Refused(409 if job.status in ("queued", "running") else 404,
                          f"the report is not ready (the job is {job.status})")
        return path

    @app.delete("/api/v1/jobs/{job_id}", status_code=204, tags=["jobs"])
    def delete_job(request: Request, job_id: str) -> Response:
        """Remove the job: its upload, report and thumbnails. A running job's result is discarded."""
        store.delete(job_for(request, job_id).id)
        return Response(status_code=204)

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict:
        return {"ok": True, "specialists": runner.info.get("specialists", []), "panel_fitted": runner.info.get("panel_fitted"),
                "workers": cfg.workers, "queued": runner.queued(), "running": store.count("running")}

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(page.FAVICON_SVG, media_type="image/svg+xml", headers={"cache-control": "max-age=86400"})

    # ---- API docs, served from this machine --------------------------------------------------
    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs(request: Request) -> HTMLResponse:
        return HTMLResponse(page.render_docs())

    @app.get("/docs/init.js", include_in_schema=False)
    def docs_init() -> PlainTextResponse:
        return PlainTextResponse(page.DOCS_INIT_JS, media_type="text/javascript")

    swagger = _swagger_dir()
    if swagger is not None:
        app.mount("/docs/static", StaticFiles(directory=swagger), name="swagger")

    # the Guard outermost: its headers go on every answer, the trusted-host refusal included
    inner = TrustedHostMiddleware(app, allowed_hosts=list(cfg.allowed_hosts)) if cfg.allowed_hosts is not None else app
    return _Wrapped(Guard(inner, token=cfg.token, allowed_hosts=cfg.allowed_hosts), app)


class _Wrapped:
    """The ASGI app with its middlewares, still giving the FastAPI app's `state` and routes to callers
    (tests, the CLI). Middlewares go outside FastAPI's own stack so the Guard also covers its errors."""

    def __init__(self, asgi, fastapi: FastAPI):
        self.asgi, self.fastapi = asgi, fastapi
        self.state = fastapi.state

    async def __call__(self, scope, receive, send):
        await self.asgi(scope, receive, send)

    def __getattr__(self, item):
        return getattr(self.fastapi, item)


def _swagger_dir() -> Optional[str]:
    """Swagger UI's files as fastapi-offline installs them (its FastAPI wrapper itself is not used)."""
    try:
        import fastapi_offline
    except ImportError:
        return None
    return str(Path(fastapi_offline.__file__).parent / "static")

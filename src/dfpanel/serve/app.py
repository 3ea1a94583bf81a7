"""A local web app: a page to drop a video on, detection with the loaded panel, the report shown.

Routes: GET / (page), POST /api/detect (multipart `file` -> JSON with report_url), POST /detect
(the no-JavaScript form: redirects to the report), GET /reports/{id} (report.html),
GET /reports/{id}/report.json, GET /healthz. Reports live under `work_dir/<id>/`.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at runtime.
import json
import logging
import re
import shutil
import threading
import uuid
from pathlib import Path

from fastapi import FastAPI, File, HTTPException, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse

from dfpanel.detect.pipeline import PanelDetector
from dfpanel.report.write import write_report
from dfpanel.serve.page import render_page

log = logging.getLogger(__name__)
_ID = re.compile(r"^[0-9a-f]{12}$")
CHUNK = 1 << 20


def _safe_name(name: str | None) -> str:
    base = Path(name or "upload").name
    base = re.sub(r"[^A-Za-z0-9_.\- ]+", "_", base).strip(" .") or "upload"
    return base[:120]


def create_app(detector: PanelDetector, work_dir: str | Path, max_upload_mb: int = 1024) -> FastAPI:
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()  # one video at a time: the models are shared and CPUs are few
    app = FastAPI(title="dfpanel", docs_url=None, redoc_url=None)
    app.state.detector = detector
    app.state.work_dir = work

    def save_upload(upload: UploadFile) -> tuple[str, Path]:
        rid = uuid.uuid4().hex[:12]
        folder = work / rid
        (folder / "upload").mkdir(parents=True)
        dest = folder / "upload" / _safe_name(upload.filename)
        size = 0
        with open(dest, "wb") as fh:
            while chunk := upload.file.read(CHUNK):
                size += len(chunk)
                if size > max_upload_mb * CHUNK:
                    fh.close()
                    shutil.rmtree(folder, ignore_errors=True)
                    raise HTTPException(413, f"file larger than {max_upload_mb} MB")
                fh.write(chunk)
        if size == 0:
            shutil.rmtree(folder, ignore_errors=True)
            raise HTTPException(400, "empty upload; choose a video file")
        return rid, dest

    def analyse(upload: UploadFile) -> dict:
        rid, path = save_upload(upload)
        with lock:
            try:
                outcome = detector.analyse(path)
            except Exception as exc:  # a bug on one upload must not take the page down; keep the traceback in the log
                log.exception("detection failed on %s", path)
                outcome = detector.fail(path, "error", f"internal error: {type(exc).__name__}: {exc}")
        write_report(outcome.report, work / rid, outcome.thumbnails)
        r = outcome.report
        return {
            "id": rid,
            "name": path.name,
            "status": r["status"],
            "verdict": r["verdict"],
            "probability": r["panel"]["probability"],
            "strongest": r.get("strongest"),
            "reason": outcome.reason,
            "training_data": r["training_data"],  # its notice says when the verdict is a demonstration
            "report_url": f"reports/{rid}",
            "json_url": f"reports/{rid}/report.json",
        }

    def recent(limit: int = 10) -> list[dict]:
        out = []
        folders = sorted((p for p in work.iterdir() if _ID.match(p.name) and (p / "report.json").is_file()),
                         key=lambda p: p.stat().st_mtime, reverse=True)
        for p in folders[:limit]:
            r = json.loads((p / "report.json").read_text())
            out.append({"id": p.name, "name": r["video"]["name"], "verdict": r["verdict"],
                        "probability": r["panel"]["probability"]})
        return out

    def report_folder(rid: str) -> Path:
        if not _ID.match(rid) or not (work / rid / "report.html").is_file():
            raise HTTPException(404, "no such report")
        return work / rid

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        panel = detector.panel
        note = "fitted panel" if panel.fitted else "equal-weights panel"
        return render_page([r.name for r in detector.runners], recent(), note, detector.training_data())

    @app.post("/api/detect")
    def api_detect(file: UploadFile = File(...)) -> JSONResponse:
        return JSONResponse(analyse(file))

    @app.post("/detect")
    def form_detect(file: UploadFile = File(...)) -> RedirectResponse:
        res = analyse(file)
        return RedirectResponse(res["report_url"], status_code=303)

    @app.get("/reports/{rid}", response_class=HTMLResponse)
    def report_html(rid: str) -> FileResponse:
        return FileResponse(report_folder(rid) / "report.html", media_type="text/html")

    @app.get("/reports/{rid}/report.json")
    def report_json(rid: str) -> FileResponse:
        return FileResponse(report_folder(rid) / "report.json", media_type="application/json")

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True, "specialists": [r.name for r in detector.runners], "panel_fitted": detector.panel.fitted}

    return app

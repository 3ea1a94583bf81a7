"""The web service: jobs, API, privacy, access, limits (stand-in specialists, real videos, real HTTP
where streaming matters)."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import time

import pytest
from fastapi.testclient import TestClient
from serve_helpers import (
    FakeFactory,
    GatedDetector,
    LiveServer,
    fake_detector,
    make_app,
    wait_for,
)
from video_factory import VideoSpec, make_video

from dfpanel.report.schema import validate_report
from dfpanel.serve.security import AUTH_COOKIE, VISITOR_COOKIE
from dfpanel.serve.upload import FilePartWriter, Refused

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def video_bytes(tmp_path_factory) -> bytes:
    path = make_video(tmp_path_factory.mktemp("s") / "clip.mp4", VideoSpec(seconds=0.6, size=(160, 120), face_height=60))
    return path.read_bytes()


def upload(c, video_bytes, name="talk.mp4", **kw):
    return c.post("/api/v1/jobs", files={"file": (name, video_bytes, "video/mp4")}, **kw)


def job_dirs(data):
    root = data / "jobs"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


# ---- jobs through the API --------------------------------------------------------------------
def test_upload_is_a_job_that_a_worker_analyses(tmp_path, video_bytes):
    data = tmp_path / "data"
    with TestClient(make_app(data)) as c:
        res = upload(c, video_bytes)
        assert res.status_code == 202, res.text
        job = res.json()
        assert job["status"] == "queued" and job["name"] == "talk.mp4"
        assert len(job["id"]) == 24 and res.headers["location"] == f"/api/v1/jobs/{job['id']}"
        done = wait_for(c, job["id"])
        assert done["status"] == "done" and done["progress"] == 1.0 and done["stage"] == "done"
        report = validate_report(done["report"])
        assert report["status"] == "analysed" and report["verdict"] in ("real", "fake", "uncertain")
        assert done["result"]["probability"] == pytest.approx(report["panel"]["probability"])
        # the report names the file, never the server's paths
        assert report["video"]["path"] == report["video"]["name"] == "talk.mp4"
        html = c.get(f"/api/v1/jobs/{job['id']}/report.html")
        assert html.status_code == 200 and "<svg" in html.text and "talk.mp4" in html.text
        js = c.get(f"/api/v1/jobs/{job['id']}/report.json").json()
        assert js["panel"] == report["panel"]
        for text in (html.text, json.dumps(js), json.dumps(done)):
            assert str(tmp_path) not in text
        # the upload is gone after analysis; the report and the thumbnails stay
        folder = data / "jobs" / job["id"]
        assert not (folder / "upload").exists()
        assert (folder / "report.html").is_file() and list((folder / "thumbnails").glob("*.png"))
        # the job's page shows the report with the thumbnails, under the service's toolbar
        page = c.get(f"/jobs/{job['id']}").text
        assert "data:image/png;base64," in page and "report.json" in page and "Delete" in page


def test_keep_uploads_keeps_the_video(tmp_path, video_bytes):
    data = tmp_path / "data"
    with TestClient(make_app(data, keep_uploads=True)) as c:
        jid = upload(c, video_bytes, name="../../evil name!.mp4").json()["id"]
        assert wait_for(c, jid)["name"] == "evil name_.mp4"
        assert (data / "jobs" / jid / "upload" / "evil name_.mp4").read_bytes() == video_bytes
    assert not (tmp_path / "evil name!.mp4").exists()


def test_progress_is_reported_while_a_job_runs_and_deleting_it_discards_its_result(tmp_path, video_bytes):
    det = GatedDetector(stage="scoring CM")
    data = tmp_path / "data"
    with TestClient(make_app(data, detector=det)) as c:
        jid = upload(c, video_bytes).json()["id"]
        assert det.reached.wait(20)
        job = c.get(f"/api/v1/jobs/{jid}").json()
        assert job["status"] == "running" and job["stage"] == "scoring CM" and 0.6 <= job["progress"] < 1
        assert "report" not in job
        assert c.get(f"/api/v1/jobs/{jid}/report.html").status_code == 409
        progress_page = c.get(f"/jobs/{jid}")
        assert "scoring CM" in progress_page.text and 'http-equiv="refresh"' in progress_page.text  # works without JS
        assert c.delete(f"/api/v1/jobs/{jid}").status_code == 204
        det.go.set()
        time.sleep(0.5)
        runner = c.app.state.runner
        runner.stop()
        assert job_dirs(data) == [] and c.get(f"/api/v1/jobs/{jid}").status_code == 404


def test_delete_removes_upload_report_and_thumbnails(tmp_path, video_bytes):
    data = tmp_path / "data"
    with TestClient(make_app(data, keep_uploads=True)) as c:
        jid = upload(c, video_bytes).json()["id"]
        wait_for(c, jid)
        assert job_dirs(data) == [jid]
        assert c.delete(f"/api/v1/jobs/{jid}").status_code == 204
        assert job_dirs(data) == []
        for url in (f"/api/v1/jobs/{jid}", f"/api/v1/jobs/{jid}/report.html", f"/jobs/{jid}"):
            assert c.get(url).status_code == 404
        assert c.delete(f"/api/v1/jobs/{jid}").status_code == 404


def test_the_plain_form_works_without_javascript(tmp_path, video_bytes):
    data = tmp_path / "data"
    with TestClient(make_app(data)) as c:
        c.get("/")
        res = c.post("/detect", files={"file": ("silent.mp4", video_bytes, "video/mp4")},
                     headers={"accept": "text/html"}, follow_redirects=False)
        assert res.status_code == 303 and res.headers["location"].startswith("jobs/")
        jid = res.headers["location"].split("/")[-1]
        wait_for(c, jid)
        page = c.get(f"/jobs/{jid}").text
        assert "abstained: no audio track" in page
        assert f'href="jobs/{jid}"' in c.get("/").text  # listed for this browser
        res = c.post(f"/jobs/{jid}/delete", follow_redirects=False)
        assert res.status_code == 303 and job_dirs(data) == []
        # a refused form upload is a page saying why, not JSON
        bad = c.post("/detect", files={"file": ("notes.txt", b"just text", "text/plain")}, headers={"accept": "text/html"})
        assert bad.status_code == 415 and "notes.txt is not a video" in bad.text and "<html" in bad.text


def test_a_video_the_library_cannot_analyse_gets_a_report_saying_why(tmp_path, video_bytes):
    with TestClient(make_app(tmp_path / "data")) as c:
        job = wait_for(c, upload(c, video_bytes, name="noface.mp4").json()["id"])
        assert job["status"] == "done" and job["result"]["status"] == "failed"
        assert "no face" in job["result"]["reason"] and job["report"]["verdict"] is None
        assert "not analysed" in c.get(f"/jobs/{job['id']}").text


def test_a_bug_in_detection_is_a_failed_report_and_no_traceback(tmp_path, video_bytes):
    det = fake_detector()

    def boom(video, progress=None):
        raise RuntimeError("secret internal state /srv/x")

    det.analyse = boom
    with TestClient(make_app(tmp_path / "data", detector=det)) as c:
        job = wait_for(c, upload(c, video_bytes).json()["id"])
        assert job["result"]["status"] == "failed" and "internal error" in job["result"]["reason"]
        assert "secret internal state" not in json.dumps(job) and "Traceback" not in json.dumps(job)
        # the service goes on
        assert c.get("/healthz").json()["ok"] is True


def test_jobs_run_in_analysis_processes_and_a_crash_fails_only_its_job(tmp_path, video_bytes):
    data = tmp_path / "data"
    with TestClient(make_app(data, detector=FakeFactory(), keep_uploads=False)) as c:
        runner = c.app.state.runner
        first_child = runner.analysers[0].proc.pid
        assert first_child != os.getpid() and c.get("/healthz").json()["specialists"] == ["bg", "cm", "av", "tm"]
        ok = wait_for(c, upload(c, video_bytes).json()["id"])
        assert ok["status"] == "done" and ok["report"]["status"] == "analysed"
        crash = wait_for(c, upload(c, video_bytes, name="crash.mp4").json()["id"])
        assert crash["status"] == "failed" and "exit code 3" in crash["error"] and "analysis stopped" in crash["error"]
        assert not (data / "jobs" / crash["id"] / "upload").exists()
        assert "analysis stopped on this video" in c.get(f"/jobs/{crash['id']}").text
        # the service goes on, with a fresh analysis process
        again = wait_for(c, upload(c, video_bytes, name="after.mp4").json()["id"])
        assert again["status"] == "done" and again["report"]["video"]["name"] == "after.mp4"
        assert runner.analysers[0].proc.pid != first_child
    assert runner.analysers[0].proc is None  # stopped with the service


def test_a_job_running_when_the_service_stops_runs_again_at_the_next_start(tmp_path, video_bytes):
    data = tmp_path / "data"
    with TestClient(make_app(data, detector=FakeFactory())) as c:
        jid = upload(c, video_bytes, name="slow.mp4").json()["id"]
        wait_for(c, jid, states=("running",))
        c.app.state.runner.stop(timeout=0.2)  # the analysis process is stopped under the running job
        time.sleep(0.5)
        assert json.loads((data / "jobs" / jid / "job.json").read_text())["status"] == "running"
    with TestClient(make_app(data, start_workers=False)) as c:
        assert c.get(f"/api/v1/jobs/{jid}").json()["status"] == "queued"


# ---- privacy ---------------------------------------------------------------------------------
def test_a_visitor_sees_only_their_own_jobs(tmp_path, video_bytes):
    app = make_app(tmp_path / "data")
    with TestClient(app) as alice, TestClient(app) as bob:
        alice.get("/")  # the page gives the browser its visitor cookie
        assert alice.cookies.get(VISITOR_COOKIE)
        jid = upload(alice, video_bytes, name="alice.mp4").json()["id"]
        wait_for(alice, jid)
        assert [j["id"] for j in alice.get("/api/v1/jobs").json()["jobs"]] == [jid]
        assert "alice.mp4" in alice.get("/").text
        # another browser: no list, no job, no report, no delete, even with the id
        bob.get("/")
        assert bob.get("/api/v1/jobs").json() == {"jobs": []}
        assert "alice.mp4" not in bob.get("/").text
        for url in (f"/api/v1/jobs/{jid}", f"/api/v1/jobs/{jid}/report.html", f"/jobs/{jid}"):
            assert bob.get(url).status_code == 404
        assert bob.delete(f"/api/v1/jobs/{jid}").status_code == 404
        assert alice.get(f"/api/v1/jobs/{jid}").status_code == 200
    # the job file keeps a hash of the cookie, not the cookie
    state = (tmp_path / "data" / "jobs" / jid / "job.json").read_text()
    assert alice.cookies.get(VISITOR_COOKIE) not in state


def test_job_ids_are_unguessable_tokens(tmp_path, video_bytes):
    with TestClient(make_app(tmp_path / "data", start_workers=False, max_queue=8)) as c:
        ids = [upload(c, video_bytes).json()["id"] for _ in range(4)]
    assert len(set(ids)) == 4
    assert all(len(i) == 24 and set(i) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") for i in ids)


def test_reports_expire_after_the_retention(tmp_path, video_bytes):
    data = tmp_path / "data"
    with TestClient(make_app(data, retention_s=3600)) as c:
        jid = wait_for(c, upload(c, video_bytes).json()["id"])["id"]
        runner = c.app.state.runner
        assert runner.clean(now=time.time() + 60) == 0 and job_dirs(data) == [jid]
        assert runner.clean(now=time.time() + 3601) == 1 and job_dirs(data) == []
        assert c.get(f"/api/v1/jobs/{jid}").status_code == 404


# ---- restarts --------------------------------------------------------------------------------
def test_a_restart_runs_queued_and_interrupted_jobs_again(tmp_path, video_bytes):
    data = tmp_path / "data"
    with TestClient(make_app(data, start_workers=False)) as c:  # no worker: the jobs stay queued
        first = upload(c, video_bytes, name="first.mp4").json()["id"]
        second = upload(c, video_bytes, name="second.mp4").json()["id"]
    # the second was running when the server died; a dead upload was half received
    state = json.loads((data / "jobs" / second / "job.json").read_text())
    (data / "jobs" / second / "job.json").write_text(json.dumps(dict(state, status="running", stage="scoring BG", attempts=1)))
    dead = data / "jobs" / ("x" * 24)
    (dead / "upload").mkdir(parents=True)
    (dead / "job.json").write_text(json.dumps({"id": "x" * 24, "name": "half.mp4", "status": "receiving"}))
    with TestClient(make_app(data)) as c:
        for jid, name in ((first, "first.mp4"), (second, "second.mp4")):
            job = wait_for(c, jid)
            assert job["status"] == "done" and job["report"]["video"]["name"] == name
        assert not dead.exists()


def test_a_video_that_kept_killing_the_server_is_not_tried_again(tmp_path, video_bytes):
    data = tmp_path / "data"
    with TestClient(make_app(data, start_workers=False)) as c:
        jid = upload(c, video_bytes).json()["id"]
    path = data / "jobs" / jid / "job.json"
    path.write_text(json.dumps(dict(json.loads(path.read_text()), status="running", attempts=3)))
    with TestClient(make_app(data)) as c:
        job = c.get(f"/api/v1/jobs/{jid}").json()
        assert job["status"] == "failed" and "interrupted 3 times" in job["error"]
        assert "interrupted 3 times" in c.get(f"/jobs/{jid}").text


# ---- limits ----------------------------------------------------------------------------------
def test_a_non_video_is_refused_after_probing_and_nothing_is_kept(tmp_path):
    data = tmp_path / "data"
    with TestClient(make_app(data)) as c:
        res = c.post("/api/v1/jobs", files={"file": ("notes.txt", b"hello, not a video", "text/plain")})
        assert res.status_code == 415 and res.json()["detail"].startswith("notes.txt is not a video")
        assert c.post("/api/v1/jobs", files={"file": ("empty.mp4", b"", "video/mp4")}).status_code == 400
        assert c.post("/api/v1/jobs", files={"other": ("a.mp4", b"123", "video/mp4")}).status_code == 422
        assert c.post("/api/v1/jobs", content=b"raw bytes", headers={"content-type": "video/mp4"}).status_code == 415
        assert job_dirs(data) == []


def test_the_file_part_writer_never_writes_past_the_limit():
    sink = io.BytesIO()
    sink.close = lambda: None
    w = FilePartWriter(b"XyZ", limit=1 << 20, open_file=lambda name: sink)
    head = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n\r\n'
    w.feed(head)
    with pytest.raises(Refused) as err:
        for _ in range(40):
            w.feed(b"\0" * (128 << 10))
    assert err.value.status == 413 and len(sink.getvalue()) <= 1 << 20


def test_an_oversized_streamed_upload_is_refused_without_spooling(tmp_path, monkeypatch, video_bytes):
    import starlette.formparsers

    def no_spooling(*a, **k):
        raise AssertionError("the body was spooled to a temporary file")

    monkeypatch.setattr(starlette.formparsers, "SpooledTemporaryFile", no_spooling)
    data = tmp_path / "data"
    with TestClient(make_app(data, max_upload_mb=1)) as c:
        def body():  # chunked: no Content-Length, the limit must hold while it arrives
            yield b'--B\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n\r\n'
            for _ in range(24):
                yield b"\0" * (128 << 10)
            yield b"\r\n--B--\r\n"

        res = c.post("/api/v1/jobs", content=body(), headers={"content-type": "multipart/form-data; boundary=B"})
        assert res.status_code == 413 and "1 MB" in res.json()["detail"]
        assert job_dirs(data) == []
        assert upload(c, video_bytes).status_code == 202  # small ones still go through the same path


def test_a_declared_oversized_upload_is_refused_before_its_body_is_read(tmp_path):
    data = tmp_path / "data"
    with LiveServer(make_app(data, max_upload_mb=5)) as srv, socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=B\r\n"
                  b"Content-Length: 600000000\r\n\r\n" + b"x" * 1024)
        answer = b""
        while b"larger than the limit" not in answer:  # answered after 1 KB of the 600 MB announced
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
        answer = answer.decode()
        assert answer.startswith("HTTP/1.1 413") and "larger than the limit of 5 MB" in answer
    assert job_dirs(data) == []


def test_a_full_queue_answers_503_with_retry_after(tmp_path, video_bytes):
    data = tmp_path / "data"
    with TestClient(make_app(data, start_workers=False, max_queue=2)) as c:
        assert upload(c, video_bytes).status_code == 202
        assert upload(c, video_bytes).status_code == 202
        res = upload(c, video_bytes)
        assert res.status_code == 503 and int(res.headers["retry-after"]) >= 5 and "queue is full" in res.json()["detail"]
        assert len(job_dirs(data)) == 2


def test_one_client_cannot_fill_the_queue(tmp_path, video_bytes):
    app = make_app(tmp_path / "data", start_workers=False, max_queue=8, max_per_client=2)
    with TestClient(app) as alice, TestClient(app) as bob:
        alice.get("/")
        assert [upload(alice, video_bytes).status_code for _ in range(2)] == [202, 202]
        res = upload(alice, video_bytes)
        assert res.status_code == 429 and "2 videos waiting" in res.json()["detail"] and int(res.headers["retry-after"]) >= 5
        bob.get("/")  # another browser has its own share
        assert upload(bob, video_bytes).status_code == 202
        # an API client without cookies is counted by its address, across its requests
        app.state.config.max_per_client = 4
        plain = TestClient(app)
        assert [upload(plain, video_bytes).status_code for _ in range(5)] == [202] * 4 + [429]
        # a finished (here: deleted) job frees its place
        jid = alice.get("/api/v1/jobs").json()["jobs"][0]["id"]
        assert alice.delete(f"/api/v1/jobs/{jid}").status_code == 204
        app.state.config.max_per_client = 2
        assert upload(alice, video_bytes).status_code == 202


def test_uploads_are_refused_when_the_disk_is_nearly_full(tmp_path, video_bytes):
    with TestClient(make_app(tmp_path / "data", min_free_mb=1 << 40)) as c:
        res = upload(c, video_bytes)
        assert res.status_code == 507 and "disk is nearly full" in res.json()["detail"]


# ---- access ----------------------------------------------------------------------------------
def test_a_token_is_required_on_every_request(tmp_path, video_bytes):
    with TestClient(make_app(tmp_path / "data", token=TOKEN)) as c:
        assert c.get("/healthz").status_code == 200  # open: says nothing about anyone's jobs
        res = c.get("/api/v1/jobs")
        assert res.status_code == 401 and res.headers["www-authenticate"].startswith("Bearer")
        assert "Authorization: Bearer" in res.json()["detail"]
        assert upload(c, video_bytes, headers={"authorization": "Bearer wrong-token-000"}).status_code == 401
        assert c.get("/openapi.json").status_code == 401
        ok = upload(c, video_bytes, headers={"authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 202
        assert c.get(f"/api/v1/jobs/{ok.json()['id']}").status_code == 401  # every request
        # a browser is sent to the login page, which sets a cookie that is not the token
        page = c.get("/jobs/abc", headers={"accept": "text/html"}, follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/login?next=/jobs/abc"
        assert 'type="password"' in c.get("/login").text
        assert c.post("/login", data={"token": "nope", "next": "/"}).status_code == 401
        res = c.post("/login", data={"token": TOKEN, "next": "//evil.example/"}, follow_redirects=False)
        assert res.status_code == 303 and res.headers["location"] == "/"
        assert c.cookies.get(AUTH_COOKIE) and TOKEN not in c.cookies.get(AUTH_COOKIE)
        assert "Drop a video here" in c.get("/").text
        assert c.get(f"/api/v1/jobs/{ok.json()['id']}").status_code == 200
        c.post("/logout")
        assert c.get("/api/v1/jobs").status_code == 401


def test_unknown_host_names_are_refused(tmp_path):
    with TestClient(make_app(tmp_path / "data")) as c:
        assert c.get("/", headers={"host": "127.0.0.1:8000"}).status_code == 200
        refused = c.get("/", headers={"host": "attacker.example"})  # DNS rebinding
        assert refused.status_code == 400 and refused.headers["x-content-type-options"] == "nosniff"


def test_cross_site_writes_are_refused(tmp_path, video_bytes):
    with TestClient(make_app(tmp_path / "data")) as c:
        res = upload(c, video_bytes, headers={"origin": "http://attacker.example"})
        assert res.status_code == 403 and "cross-site" in res.json()["detail"]
        assert upload(c, video_bytes, headers={"origin": "null"}).status_code == 403  # a sandboxed or file:// page
        assert upload(c, video_bytes, headers={"origin": "http://testserver"}).status_code == 202
        # behind a reverse proxy the page's origin is the proxy's public name, one of --allowed-hosts
        assert upload(c, video_bytes, headers={"origin": "https://localhost"}).status_code == 202


def test_a_proxied_service_without_a_token_is_warned_about_once(tmp_path, caplog):
    with TestClient(make_app(tmp_path / "data")) as c, caplog.at_level("WARNING", logger="dfpanel.serve.security"):
        c.get("/healthz")
        assert not caplog.records
        for _ in range(3):
            c.get("/healthz", headers={"x-forwarded-for": "203.0.113.9"})
        assert [r.getMessage() for r in caplog.records if "proxy" in r.getMessage()] and len(caplog.records) == 1


def test_a_wrong_token_is_answered_slowly_and_cookies_are_secure_over_https(tmp_path):
    with TestClient(make_app(tmp_path / "data", token=TOKEN), base_url="https://testserver") as c:
        t = time.perf_counter()
        assert c.get("/api/v1/jobs", headers={"authorization": "Bearer wrong-token-000"}).status_code == 401
        assert time.perf_counter() - t >= 0.45
        res = c.post("/login", data={"token": TOKEN, "next": "/"}, follow_redirects=False)
        assert "secure" in res.headers["set-cookie"].lower()


def test_every_answer_carries_the_security_headers(tmp_path, video_bytes):
    with TestClient(make_app(tmp_path / "data")) as c:
        first = c.get("/").headers["set-cookie"].lower()  # the visitor cookie: not readable by scripts
        assert "httponly" in first and "samesite=lax" in first
        jid = upload(c, video_bytes).json()["id"]
        wait_for(c, jid)
        for url in ("/", f"/jobs/{jid}", f"/api/v1/jobs/{jid}", f"/api/v1/jobs/{jid}/report.html", "/nope", "/docs"):
            h = c.get(url).headers
            policy = h["content-security-policy"]
            assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy, url
            assert "http" not in policy and "*" not in policy, url  # no external source
            assert h["x-content-type-options"] == "nosniff" and h["referrer-policy"] == "same-origin", url
        page = c.get("/")
        nonce = page.headers["content-security-policy"].split("'nonce-")[1].split("'")[0]
        assert f'<script nonce="{nonce}">' in page.text and "https://" not in page.text
        assert page.headers["cache-control"] == "no-store"


def test_openapi_and_its_docs_are_served_from_this_machine(tmp_path):
    with TestClient(make_app(tmp_path / "data")) as c:
        spec = c.get("/openapi.json").json()
        assert {"/api/v1/jobs", "/api/v1/jobs/{job_id}", "/api/v1/jobs/{job_id}/report.html", "/healthz"} <= set(spec["paths"])
        body = spec["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]
        assert body["schema"]["required"] == ["file"]
        docs = c.get("/docs").text
        assert "docs/static/swagger-ui-bundle.js" in docs and "cdn" not in docs and "http" not in docs
        assert c.get("/docs/static/swagger-ui-bundle.js").status_code == 200


# ---- the command -----------------------------------------------------------------------------
def test_serve_refuses_to_listen_beyond_this_machine_without_a_token(tmp_path, capsys, monkeypatch):
    from dfpanel.cli import main

    monkeypatch.delenv("DFPANEL_SERVE_TOKEN", raising=False)
    missing = str(tmp_path / "nope")
    assert main(["serve", "--weights", missing, "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "--host 0.0.0.0 lets other machines in" in err and "--insecure-no-token" in err
    assert main(["serve", "--weights", missing, "--host", "0.0.0.0", "--token", "short"]) == 2
    assert "too short" in capsys.readouterr().err
    # with a token (or explicitly without one) it goes on, here to the missing weights
    monkeypatch.setenv("DFPANEL_SERVE_TOKEN", TOKEN)
    assert main(["serve", "--weights", missing, "--host", "0.0.0.0"]) == 2
    assert "weights folder not found" in capsys.readouterr().err
    monkeypatch.delenv("DFPANEL_SERVE_TOKEN")
    assert main(["serve", "--weights", missing, "--host", "0.0.0.0", "--insecure-no-token"]) == 2
    assert "weights folder not found" in capsys.readouterr().err
    assert main(["serve", "--weights", missing, "--retention", "soon"]) == 2
    assert "--retention 'soon'" in capsys.readouterr().err


@pytest.mark.skipif(not shutil.which("openssl"), reason="needs openssl to make a test certificate")
def test_serve_speaks_https_with_a_certificate_and_marks_its_cookies_secure(tmp_path):
    import httpx

    from dfpanel.commands.serve import tls_options
    from dfpanel.errors import ConfigError

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    with pytest.raises(ConfigError, match="go together"):
        tls_options(cert, None)
    with pytest.raises(ConfigError, match="not a certificate and its key"):
        tls_options(key, key)
    with pytest.raises(ConfigError, match="no such file"):
        tls_options(tmp_path / "nope.pem", key)
    opts = tls_options(cert, key)
    with LiveServer(make_app(tmp_path / "data"), **opts) as srv:
        assert srv.url.startswith("https://")
        res = httpx.get(srv.url + "/", verify=str(cert))
        assert res.status_code == 200 and "Drop a video here" in res.text
        assert "secure" in res.headers["set-cookie"].lower()


def test_allowed_hosts_cover_the_names_clients_use():
    from dfpanel.commands.serve import allowed_hosts

    assert allowed_hosts("127.0.0.1", []) == ["localhost", "127.0.0.1", "::1", "[::1]"]
    assert "detector.lan" in allowed_hosts("10.0.0.5", ["detector.lan,det"]) and "10.0.0.5" in allowed_hosts("10.0.0.5", [])
    assert socket.gethostname() in allowed_hosts("0.0.0.0", [])


def test_analyse_reports_its_steps_in_order(tmp_path, video_bytes):
    path = tmp_path / "talk.mp4"
    path.write_bytes(video_bytes)
    heard = []
    fake_detector().analyse(path, progress=lambda s, f: heard.append((s, f)))
    stages = [s for s, _ in heard]
    assert stages == ["reading the file", "extracting faces", "scoring BG", "scoring CM", "scoring AV", "scoring TM",
                      "combining the verdict"]
    assert [f for _, f in heard] == sorted(f for _, f in heard)

    # an extraction that reports its clips (as default_extract does) shows them as they are done
    from detect_fakes import fake_extract, fake_runners

    from dfpanel.detect.pipeline import DetectConfig, PanelDetector
    from dfpanel.panel.combiner import Panel

    def clip_by_clip(p, video_id, timings, progress=None):
        for k in (1, 2, 3):
            progress(k, 3)
        return fake_extract(p, video_id, timings)

    heard.clear()
    PanelDetector(fake_runners(), Panel(), DetectConfig(clip_len=4), extract=clip_by_clip).analyse(
        path, progress=lambda s, f: heard.append((s, f)))
    assert [s for s, _ in heard][1:5] == ["extracting faces", "extracting faces (clip 1 of 3)",
                                          "extracting faces (clip 2 of 3)", "extracting faces (clip 3 of 3)"]
    assert heard[4][1] == pytest.approx(0.6) and [f for _, f in heard] == sorted(f for _, f in heard)


def test_the_web_process_loads_no_model_code(tmp_path, video_bytes):
    """The web process holds no model (the analysis processes do): importing the service, checking the
    command's options and rendering a finished job's page must not import torch (~0.5 GB)."""
    import subprocess
    import sys

    path = tmp_path / "talk.mp4"
    path.write_bytes(video_bytes)
    report = fake_detector().analyse(path).report
    for s in report["specialists"]:  # the stand-ins have no colour; real specialists' runners carry theirs
        s["color"] = "#1f77b4"
    (tmp_path / "report.json").write_text(json.dumps(report))
    code = f"""
import json, sys
from pathlib import Path
import dfpanel.commands.serve, dfpanel.serve.app, dfpanel.serve.worker
from dfpanel.detect.build import check_device, check_frames, resolve_weights
from dfpanel.serve.page import render_job_report
check_device("cpu"); check_frames(16)
report = json.loads(Path({str(tmp_path / "report.json")!r}).read_text())
html = render_job_report({{"id": "x" * 24}}, report, [])
assert "<svg" in html
print("torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"

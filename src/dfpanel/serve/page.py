"""The web service's pages: the upload page with the visitor's own videos, a job's page (live progress,
then its report), the login page and error pages.

Self-contained like the report: inline CSS, a little inline JavaScript carrying the answer's CSP nonce,
no external assets. Everything works without JavaScript too: a plain form uploads, a job's page
refreshes itself while the video is analysed, delete buttons are forms.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

from dfpanel.report.html import CSS, VERDICT_COLORS, render_html, training_banner

PAGE_CSS = """
.drop{border:3px dashed #90a4ae;border-radius:14px;padding:56px 20px;text-align:center;background:#fff;cursor:pointer;transition:.15s}
.drop.over{border-color:#1f77b4;background:#e3f2fd}
.drop b{font-size:20px}
#status{margin-top:14px;font-size:15px;min-height:22px}
button,.button{font-size:14px;padding:7px 16px;border-radius:6px;border:0;background:#1f77b4;color:#fff;cursor:pointer;text-decoration:none;display:inline-block}
button.danger{background:#fff;color:#c62828;border:1px solid #c62828}
form.inline{display:inline;margin:0}
.bar{height:14px;background:#eceff1;border-radius:7px;overflow:hidden;margin:12px 0}
.bar div{height:100%;background:#1f77b4;transition:width .4s}
.toolbar{display:flex;gap:10px;align-items:center;flex-wrap:wrap;margin-bottom:16px}
.toolbar .grow{flex:1}
input[type=password]{font-size:15px;padding:7px 10px;border:1px solid #b0bec5;border-radius:6px;width:280px}
"""

INDEX_JS = """
const drop=document.getElementById('drop'),input=document.getElementById('file'),status=document.getElementById('status');
function say(t){status.textContent=t;}
let busy=false;  // an upload in progress: the list's refresh must not reload the page under it
function send(file){
  if(!file)return;
  busy=true;
  const fd=new FormData();fd.append('file',file,file.name);
  const x=new XMLHttpRequest();x.open('POST','api/v1/jobs');
  x.upload.onprogress=e=>{if(e.lengthComputable)say('Uploading '+file.name+' … '+Math.round(100*e.loaded/e.total)+'%');};
  x.onload=()=>{let j={};try{j=JSON.parse(x.responseText);}catch(e){}
    if(x.status===202){say('Uploaded; opening its page …');window.location='jobs/'+j.id;}
    else{busy=false;say('Not accepted: '+(j.detail||x.statusText)+(x.getResponseHeader('Retry-After')?' (try again in '+x.getResponseHeader('Retry-After')+' s)':''));}};
  x.onerror=()=>{busy=false;say('The upload failed: the connection was lost.');};
  say('Uploading '+file.name+' …');x.send(fd);
}
drop.addEventListener('click',()=>input.click());
drop.addEventListener('keydown',e=>{if(e.key==='Enter'||e.key===' '){e.preventDefault();input.click();}});
input.addEventListener('change',()=>send(input.files[0]));
['dragenter','dragover'].forEach(e=>drop.addEventListener(e,ev=>{ev.preventDefault();drop.classList.add('over');}));
['dragleave','drop'].forEach(e=>drop.addEventListener(e,ev=>{ev.preventDefault();drop.classList.remove('over');}));
drop.addEventListener('drop',ev=>send(ev.dataTransfer.files[0]));
async function refresh(){  // the list's queued and running jobs, kept current; a finished one reloads the page
  const live=[...document.querySelectorAll('[data-live]')];
  if(!live.length)return;
  try{
    const r=await fetch('api/v1/jobs',{headers:{'Accept':'application/json'}});
    const jobs=Object.fromEntries((await r.json()).jobs.map(j=>[j.id,j]));
    for(const cell of live){
      const j=jobs[cell.dataset.live];
      if(!j||j.status==='done'||j.status==='failed'){if(!busy)window.location.reload();return;}
      cell.textContent=j.stage+' · '+Math.round(100*j.progress)+'%';
    }
  }catch(e){}
  setTimeout(refresh,1500);
}
setTimeout(refresh,1500);
"""

JOB_JS = """
const id=document.body.dataset.job,stage=document.getElementById('stage'),bar=document.getElementById('bar');
async function poll(){
  try{
    const r=await fetch('../api/v1/jobs/'+id,{headers:{'Accept':'application/json'}});
    if(r.status===404){stage.textContent='This job no longer exists.';return;}
    const j=await r.json();
    if(j.status==='done'||j.status==='failed'){window.location.reload();return;}
    stage.textContent=j.stage+(j.queue_position?' (position '+j.queue_position+' in the queue)':'');
    bar.style.width=Math.round(100*j.progress)+'%';
  }catch(e){stage.textContent='Waiting for the server …';}
  setTimeout(poll,1000);
}
setTimeout(poll,500);
"""


def _page(title: str, body: str, nonce: str, script: str = "", head: str = "", attrs: str = "") -> str:
    js = f'<script nonce="{escape(nonce)}">{script}</script>' if script else ""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>{escape(title)}</title>{head}
<style>{CSS}{PAGE_CSS}</style></head><body{attrs}><main>
{body}
</main>{js}</body></html>"""


def _when(iso: str | None) -> str:
    if not iso:
        return ""
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M UTC")


def _status_cell(job: dict) -> str:
    res = job.get("result") or {}
    if job["status"] == "done" and res.get("status") == "analysed":
        color = VERDICT_COLORS.get(res["verdict"], "#616161")
        prob = "" if res.get("probability") is None else f" · {100 * res['probability']:.0f}%"
        return f'<b style="color:{color}">{escape(res["verdict"] or "none")}</b>{prob}'
    if job["status"] == "done":
        return f'<span class="err">not analysed</span> <span class="muted">{escape(res.get("reason") or "")}</span>'
    if job["status"] == "failed":
        return f'<span class="err">failed</span> <span class="muted">{escape(job.get("error") or "")}</span>'
    return f'<span class="muted">{escape(job["stage"])} · {100 * job["progress"]:.0f}%</span>'


def _live(job: dict) -> str:
    """Marks the result cell of a job still queued or running, which the page's script keeps current."""
    return f' data-live="{escape(job["id"])}"' if job["status"] in ("queued", "running") else ""


def _delete_form(job_id: str, prefix: str = "") -> str:
    return (f'<form class="inline" method="post" action="{prefix}jobs/{escape(job_id)}/delete">'
            '<button class="danger" type="submit">Delete</button></form>')


def render_index(specialists: list[str], panel_note: str, training: dict | None, jobs: list[dict], nonce: str,
                 limit_mb: int, retention: str | None, logout: bool = False) -> str:
    """The upload page. `jobs`: this visitor's own jobs (API dicts), newest first."""
    rows = "".join(
        f'<tr><td><a href="jobs/{escape(j["id"])}">{escape(j["name"])}</a></td>'
        f'<td{_live(j)}>{_status_cell(j)}</td>'
        f'<td class="muted">{_when(j["created"])}</td><td>{_delete_form(j["id"])}</td></tr>' for j in jobs)
    kept = f"Reports are deleted after {escape(retention)}; " if retention else "Reports are kept until deleted; "
    mine = (f'<div class="card"><h2 style="margin-top:0">Your videos</h2><table><tr><th>Video</th><th>Result</th>'
            f'<th>Uploaded</th><th></th></tr>{rows}</table>'
            f'<p class="muted">Only this browser sees this list. {kept}uploads are deleted once analysed.</p></div>'
            if jobs else "")
    names = ", ".join(s.upper() for s in specialists) or "none"
    out = ('<form class="inline" method="post" action="logout"><button class="danger" type="submit">Log out</button></form>'
           if logout else "")
    body = f"""{training_banner(training)}
<div class="toolbar"><h1 class="grow">dfpanel — is this video a deepfake?</h1>{out}</div>
<div class="muted" style="margin-bottom:16px">Specialists loaded: {escape(names)} · {escape(panel_note)} · videos up to {limit_mb} MB · <a href="docs">API</a></div>
<form id="form" action="detect" method="post" enctype="multipart/form-data">
<div id="drop" class="drop" role="button" tabindex="0"><b>Drop a video here</b><div class="muted">or click to choose a file</div></div>
<input id="file" type="file" accept="video/*" hidden>
<noscript><p><input type="file" name="file" accept="video/*"> <button type="submit">Analyse</button></p></noscript>
</form><div id="status" role="status"></div>
{mine}"""
    return _page("dfpanel", body, nonce, INDEX_JS)


def render_job_progress(job: dict, nonce: str) -> str:
    pos = f" (position {job['queue_position']} in the queue)" if job.get("queue_position") else ""
    pct = round(100 * job["progress"])
    body = f"""{job_toolbar(job["id"], downloads=False)}
<div class="card"><h1>{escape(job["name"])}</h1>
<div id="stage" role="status" style="font-size:16px">{escape(job["stage"])}{pos}</div>
<div class="bar"><div id="bar" style="width:{pct}%"></div></div>
<div class="muted">This page updates by itself; the analysis goes on if you close it.</div></div>"""
    head = '<noscript><meta http-equiv="refresh" content="2"></noscript>'
    return _page(f"dfpanel · {job['name']}", body, nonce, JOB_JS, head=head, attrs=f' data-job="{escape(job["id"])}"')


def render_job_failed(job: dict, nonce: str) -> str:
    body = f"""{job_toolbar(job["id"], downloads=False)}
<div class="card"><h1>{escape(job["name"])}</h1><p class="err">{escape(job.get("error") or "failed")}</p></div>"""
    return _page(f"dfpanel · {job['name']}", body, nonce)


def job_toolbar(job_id: str, downloads: bool = True) -> str:
    """A job page's links: back to the list, the report's files (once there is a report), Delete."""
    j = escape(job_id)
    files = (f'<a class="button" href="../api/v1/jobs/{j}/report.json" download>report.json</a>'
             f'<a class="button" href="../api/v1/jobs/{j}/report.html" download>report.html</a>') if downloads else ""
    return (f'<div class="toolbar"><a class="button" href="../">← All your videos</a><span class="grow"></span>'
            f'{files}{_delete_form(job_id, "../")}</div>')


def render_job_report(job: dict, report: dict, thumbnails: list[dict]) -> str:
    """A finished job: its report (report.html's content) under the service's toolbar."""
    return render_html(report, thumbnails, toolbar=job_toolbar(job["id"]), extra_css=PAGE_CSS)


def render_login(nonce: str, target: str, wrong: bool = False) -> str:
    msg = '<p class="err">Wrong token.</p>' if wrong else ""
    body = f"""<div class="card" style="max-width:460px;margin:60px auto"><h1>dfpanel</h1>
<p>This service needs the token it was started with.</p>{msg}
<form method="post" action="login"><input type="hidden" name="next" value="{escape(target)}">
<p><input type="password" name="token" autocomplete="current-password" aria-label="token" autofocus required></p>
<button type="submit">Log in</button></form></div>"""
    return _page("dfpanel · log in", body, nonce)


def render_error(status: int, message: str, nonce: str, back: str = "/") -> str:
    body = f"""<div class="card"><h1>Not accepted</h1><p class="err">{escape(message)}</p>
<p><a class="button" href="{escape(back)}">Back</a></p><div class="muted">HTTP {status}</div></div>"""
    return _page("dfpanel · error", body, nonce)


def render_docs() -> str:
    """Swagger UI from the files fastapi-offline installs (no CDN)."""
    return """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>dfpanel API</title>
<link rel="stylesheet" href="docs/static/swagger-ui.css"></head><body><div id="swagger-ui"></div>
<script src="docs/static/swagger-ui-bundle.js"></script><script src="docs/init.js"></script></body></html>"""


DOCS_INIT_JS = "window.ui=SwaggerUIBundle({url:'openapi.json',dom_id:'#swagger-ui',deepLinking:true});"

# a magnifier over a face's outline, in the verdict colours
FAVICON_SVG = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><circle cx="13" cy="13" r="10" fill="#fff" '
               'stroke="#1f77b4" stroke-width="3"/><circle cx="13" cy="11" r="3.5" fill="#c62828"/><path d="M7 19c2-4 10-4 12 0" '
               'fill="#c62828"/><path d="M21 21l8 8" stroke="#1f77b4" stroke-width="4" stroke-linecap="round"/></svg>')

"""The upload page: drop a video (or pick one), it is analysed, the browser goes to its report.
Self-contained like the report (inline CSS and a few lines of inline JS; a plain form works without JS)."""

from __future__ import annotations

from html import escape

from dfpanel.report.html import CSS, VERDICT_COLORS, training_banner

PAGE_CSS = """
.drop{border:3px dashed #90a4ae;border-radius:14px;padding:56px 20px;text-align:center;background:#fff;cursor:pointer;transition:.15s}
.drop.over{border-color:#1f77b4;background:#e3f2fd}
.drop b{font-size:20px}
#status{margin-top:14px;font-size:15px;min-height:22px}
button{font-size:15px;padding:8px 18px;border-radius:6px;border:0;background:#1f77b4;color:#fff;cursor:pointer}
"""

SCRIPT = """
const drop=document.getElementById('drop'),input=document.getElementById('file'),status=document.getElementById('status');
function send(file){
  if(!file)return;
  status.textContent='Analysing '+file.name+' … (this takes a few seconds per video)';
  const fd=new FormData();fd.append('file',file,file.name);
  fetch('api/detect',{method:'POST',body:fd}).then(async r=>{
    const j=await r.json();
    if(!r.ok){status.textContent='Error: '+(j.detail||r.statusText);return;}
    window.location=j.report_url;
  }).catch(e=>{status.textContent='Error: '+e;});
}
drop.addEventListener('click',()=>input.click());
input.addEventListener('change',()=>send(input.files[0]));
['dragenter','dragover'].forEach(e=>drop.addEventListener(e,ev=>{ev.preventDefault();drop.classList.add('over');}));
['dragleave','drop'].forEach(e=>drop.addEventListener(e,ev=>{ev.preventDefault();drop.classList.remove('over');}));
drop.addEventListener('drop',ev=>send(ev.dataTransfer.files[0]));
"""


def render_page(specialists: list[str], recent: list[dict], panel_note: str, training: dict | None = None) -> str:
    """`training`: the loaded specialists' training data (PanelDetector.training_data()); when some learned
    only from synthetic data the page says, above everything, that verdicts are demonstrations."""
    rows = []
    for r in recent:
        prob = "" if r["probability"] is None else f"{100 * r['probability']:.0f}%"
        color = VERDICT_COLORS.get(r["verdict"], "#616161")
        rows.append(f'<tr><td><a href="reports/{escape(r["id"])}">{escape(r["name"])}</a></td>'
                    f'<td><b style="color:{color}">{escape(r["verdict"] or "not analysed")}</b></td><td>{prob}</td></tr>')
    rows = "".join(rows)
    recent_html = (f'<div class="card"><h2 style="margin-top:0">Recent</h2><table><tr><th>Video</th><th>Verdict</th>'
                   f"<th>Probability</th></tr>{rows}</table></div>") if recent else ""
    names = ", ".join(s.upper() for s in specialists) or "none"
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>dfpanel</title>
<style>{CSS}{PAGE_CSS}</style></head><body><main>
{training_banner(training)}
<h1>dfpanel — is this video a deepfake?</h1>
<div class="muted" style="margin-bottom:16px">Specialists loaded: {escape(names)} · {escape(panel_note)} · videos stay on this machine.</div>
<form id="form" action="detect" method="post" enctype="multipart/form-data">
<div id="drop" class="drop"><b>Drop a video here</b><div class="muted">or click to choose a file</div></div>
<input id="file" type="file" name="file" accept="video/*" hidden>
<noscript><p><input type="file" name="file"> <button type="submit">Analyse</button></p></noscript>
</form><div id="status"></div>
{recent_html}
</main><script>{SCRIPT}</script></body></html>"""

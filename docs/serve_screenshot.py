"""Make docs/serve.png: `dfpanel serve` with real weights, a video dropped on its page in headless
Chromium, the page photographed once the report is shown.

    .venv/bin/python docs/serve_screenshot.py --weights dfpanel-demo/weights --video some.mp4

Needs Debian's chromium and the playwright package (`make test` installs both).
"""

from __future__ import annotations

import argparse
import base64
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=Path("dfpanel-demo/weights"))
    ap.add_argument("--video", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("serve.png"))
    ap.add_argument("--width", type=int, default=1100)
    args = ap.parse_args(argv)

    from playwright.sync_api import sync_playwright

    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="dfpanel-serve-shot-"))
    server = subprocess.Popen([sys.executable, "-m", "dfpanel", "serve", "--weights", str(args.weights),
                               "--port", str(port), "--data-dir", str(data)])
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(url + "/healthz", timeout=1)
                break
            except OSError:
                if server.poll() is not None:
                    raise SystemExit("dfpanel serve stopped before it listened")
                time.sleep(0.2)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=FLAGS)
            page = browser.new_page(viewport={"width": args.width, "height": 900})
            page.goto(url + "/")
            b64 = base64.b64encode(args.video.read_bytes()).decode()
            page.evaluate("""([name, b64]) => {
                const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
                const dt = new DataTransfer(); dt.items.add(new File([bytes], name, {type: 'video/mp4'}));
                const zone = document.getElementById('drop');
                for (const t of ['dragenter', 'dragover', 'drop'])
                    zone.dispatchEvent(new DragEvent(t, {dataTransfer: dt, bubbles: true, cancelable: true}));
            }""", [args.video.name, b64])
            page.wait_for_url(re.compile(r".*/jobs/.*"))
            page.wait_for_selector(".badge", timeout=300_000)
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
        print(f"wrote {args.out}")
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()

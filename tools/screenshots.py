"""`make screenshots`: pictures of both dashboards on a simulated campus with a month of history.

Runs `campus-energy demo` in a folder of its own with `--backfill-days 30` (a
month of readings and windows written through the logger's and the bridge's
own code, so the numbers are real), waits until every meter reports live, then
opens each page and tab in headless Chromium at desktop (1280 × 900) and phone
(390 × 844) widths and writes PNG files to docs/screenshots/. The site's time
zone is Asia/Kolkata and the browser's America/New_York, so a picture shows
any time drawn in the wrong zone. Stops the demo when done.

Run: .venv/bin/python tools/screenshots.py [--out docs/screenshots] [--days 30]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support import CHROMIUM_ARGS  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
SIZES = {"desktop": (1280, 900), "phone": (390, 844)}
BROWSER_ZONE = "America/New_York"
STREAMLIT_TABS = ("Overview", "Live", "History", "Day detail", "Data quality", "Raw data")
START_TIMEOUT_S = 300.0
MIN_COVERAGE = 0.95  # mean over the meters' latest windows (the demo's meters fail now and then)
STREAMLIT_HEIGHT = 1400  # Streamlit scrolls inside its own container: a tall window shows more


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fetch_json(url: str) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            body: dict[str, object] = json.loads(answer.read())
            return body
    except (OSError, urllib.error.URLError, ValueError):
        return None


def wait_until(what: str, check: object, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(1.0)
    raise SystemExit(f"screenshots: gave up waiting for {what} after {timeout_s:.0f} s")


@contextlib.contextmanager
def demo(folder: Path, days: int, api_port: int, dashboard_port: int) -> Iterator[None]:
    command = [
        str(REPO / ".venv" / "bin" / "campus-energy"),
        "demo",
        "--dir", str(folder),
        "--backfill-days", str(days),
        "--port", str(api_port),
        "--with-dashboard",
        "--dashboard-port", str(dashboard_port),
    ]  # fmt: skip
    log = (folder.parent / "demo.log").open("wb")
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, env={**os.environ, "TZ": "UTC"},
    )  # fmt: skip
    try:
        yield
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()


def everyone_reports(api: str) -> bool:
    """Every meter online and the latest windows live ones: the first live window after the
    history hand-over is only partly covered (its first seconds are in history's last window)."""
    health = fetch_json(f"{api}/api/health")
    if not health or health.get("status") != "ok":
        return False
    answer = fetch_json(f"{api}/api/meters") or {}
    covered = [m.get("coverage") or 0.0 for m in answer.get("meters", [])]  # type: ignore[union-attr]
    return bool(covered) and sum(covered) / len(covered) >= MIN_COVERAGE


def shoot(out: Path, api: str, dashboard: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    written: list[Path] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for size, (width, height) in SIZES.items():
                context = browser.new_context(
                    viewport={"width": width, "height": height}, timezone_id=BROWSER_ZONE
                )
                page = context.new_page()
                written += web_pages(page, out, api, size)
                written += streamlit_pages(page, out, dashboard, size)
                context.close()
        finally:
            browser.close()
    return written


def web_pages(page: object, out: Path, api: str, size: str) -> list[Path]:
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    page.goto(f"{api}/")
    # function form: the page's Content-Security-Policy forbids evaluating a bare expression
    page.wait_for_function(
        "() => document.querySelector('#power-now').textContent.trim() !== '—'"
        " && document.querySelectorAll('#meters tbody tr').length > 0"
    )
    page.wait_for_selector("#chart-30d canvas")
    page.wait_for_load_state("networkidle")
    main = out / f"web-{size}.png"
    page.screenshot(path=str(main), full_page=True)
    page.locator("#meters tbody tr").first.click()
    page.wait_for_selector("#meter-detail[open] #chart-meter canvas")
    page.wait_for_function(
        "() => document.querySelector('#detail-peak').textContent.trim() !== '—'"
    )
    detail = out / f"web-meter-{size}.png"
    page.screenshot(path=str(detail))
    return [main, detail]


def streamlit_pages(page: object, out: Path, dashboard: str, size: str) -> list[Path]:
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    width = page.viewport_size["width"] if page.viewport_size else SIZES["desktop"][0]
    page.set_viewport_size({"width": width, "height": STREAMLIT_HEIGHT})
    page.goto(dashboard)
    page.get_by_role("tab", name=STREAMLIT_TABS[0]).wait_for(timeout=60_000)
    written = []
    for tab in STREAMLIT_TABS:
        page.get_by_role("tab", name=tab).click()
        panel = page.locator("[role=tabpanel]:visible")
        panel.wait_for(timeout=60_000)
        # Streamlit is done when its status widget stops saying it is running
        page.wait_for_function(
            "() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=60_000
        )
        with contextlib.suppress(Exception):
            panel.locator("canvas, svg, [data-testid=stMetric], table").first.wait_for(
                timeout=15_000
            )
        path = out / f"local-{tab.lower().replace(' ', '-')}-{size}.png"
        page.screenshot(path=str(path), full_page=True)
        written.append(path)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    api_port, dashboard_port = free_port(), free_port()
    api, dashboard = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{dashboard_port}"
    tmp = Path(tempfile.mkdtemp(prefix="campus-energy-shots-"))
    folder = tmp / "demo"
    try:
        with demo(folder, args.days, api_port, dashboard_port):
            print(f"demo starting in {folder} (a month of history first)…", flush=True)
            wait_until("every meter reporting", lambda: everyone_reports(api))
            written = shoot(args.out, api, dashboard)
    except BaseException:
        print(f"screenshots failed; the demo's output is in {tmp / 'demo.log'}", file=sys.stderr)
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    for path in written:
        print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

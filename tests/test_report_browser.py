"""The HTML report in a real headless Chromium (DevTools protocol over a pipe, stdlib only): it
loads offline without script errors, a header click sorts, the search box filters, hovering a plot
point shows that cell's tooltip. Skips when no Chromium is installed (`.ci/run` installs Debian's).

With REPORT_SCREENSHOTS=<dir> the test also saves the page's screenshots there
(benchmarks/results/report_*.png are made this way from a real results tree: see
`REPORT_RESULTS`)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from analysis.report import write_grid_outputs
from tests.results_fixture import build_results_tree

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
)


def find_browser() -> str | None:
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


class Browser:
    """A headless Chromium driven over --remote-debugging-pipe (fd 3 in, fd 4 out, NUL-framed
    JSON): one page, commands answered synchronously, a timeout on every wait."""

    def __init__(self, executable: str, profile: Path, timeout: float = 30.0) -> None:
        self.timeout = timeout
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire() -> None:  # in the child: the pipe ends on the fds Chromium expects
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        self.proc = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            preexec_fn=wire,
            close_fds=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next = 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.call("Page.enable")
        self.call("Runtime.enable")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if method not in ("Target.createTarget", "Target.attachToTarget"):
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def js(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str) -> Any:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.05)
        raise TimeoutError(f"never true in the page: {expression}")

    def centre(self, selector: str) -> tuple[float, float]:
        """Scroll the element into view; its centre in viewport pixels."""
        box = self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        return float(box[0]), float(box[1])

    def mouse(self, kind: str, x: float, y: float) -> None:
        extra = {"button": "left", "clickCount": 1} if kind != "mouseMoved" else {}
        self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, **extra)

    def click(self, selector: str) -> None:
        x, y = self.centre(selector)
        self.mouse("mouseMoved", x, y)
        self.mouse("mousePressed", x, y)
        self.mouse("mouseReleased", x, y)

    def screenshot(self, full: bool = False) -> bytes:
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=full)
        return base64.b64decode(shot["data"])

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.call("Browser.close")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    executable = find_browser()
    if executable is None:
        pytest.skip("no Chromium installed (apt-get install chromium; or set CHROMIUM=<path>)")
    results = os.environ.get("REPORT_RESULTS")
    grid = os.environ.get("REPORT_GRID", "prune_sweep")
    if results:  # a real tree, for the screenshots; its copy keeps the original untouched
        root = tmp_path_factory.mktemp("real") / "results"
        shutil.copytree(results, root, ignore=shutil.ignore_patterns("_analysis", "wandb"))
        from paper_figures.report import write_report

        html = write_report(root, grid, log=lambda _: None, wandb_log="disabled")["html"]
    else:
        root = build_results_tree(tmp_path_factory.mktemp("results")).root
        html = write_grid_outputs(root, grid, log=lambda _: None)["html"]
    browser = Browser(executable, tmp_path_factory.mktemp("profile"))
    try:
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            width=1300,
            height=950,
            deviceScaleFactor=1,
            mobile=False,
        )
        browser.call("Page.navigate", url=html.resolve().as_uri())
        browser.wait_for("document.body && document.body.dataset.ready === 'true'")
        yield browser
    finally:
        browser.close()


def save(name: str, png: bytes) -> None:
    folder = os.environ.get("REPORT_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"report_{name}.png").write_bytes(png)


COLUMN = (
    "Array.from(document.querySelectorAll('#efficiency-table tbody tr')).filter(r => !r.hidden)"
    ".map(r => r.cells[{col}].textContent.trim())"
)


def test_report_loads_offline_without_script_errors(page):
    assert page.js("window.reportErrors.length") == 0
    assert page.js("document.querySelectorAll('#plot path.pt').length") > 0
    png = page.screenshot()
    assert png[:8] == PNG_MAGIC
    save("top", png)


def test_clicking_a_header_sorts_by_its_numbers(page):
    col = page.js(
        "Array.from(document.querySelectorAll('#efficiency-table thead th'))"
        ".findIndex(th => th.textContent.startsWith('Accuracy'))"
    )
    assert col >= 0
    selector = f"#efficiency-table thead th:nth-child({col + 1})"

    def numbers() -> list[float]:
        texts = page.js(COLUMN.format(col=col))
        return [float(t.split()[0]) for t in texts if t[:1].isdigit()]

    page.click(selector)
    ascending = numbers()
    assert len(ascending) > 3 and ascending == sorted(ascending)
    assert page.js(f"document.querySelector('{selector}').getAttribute('aria-sort')") == (
        "ascending"
    )
    page.click(selector)
    assert numbers() == sorted(ascending, reverse=True)
    save("sorted", page.screenshot())


def test_typing_in_the_search_box_filters_rows(page):
    total = page.js("document.querySelectorAll('#efficiency-table tbody tr').length")
    page.click("#efficiency-table input.search")
    page.call("Input.insertText", text="random")
    rows = page.js(
        "Array.from(document.querySelectorAll('#efficiency-table tbody tr')).filter(r => !r.hidden)"
        ".map(r => r.textContent.toLowerCase())"
    )
    assert 0 < len(rows) < total and all("random" in r for r in rows)
    assert page.js("document.querySelector('#efficiency-table .count').textContent") == (
        f"{len(rows)} of {total} rows"
    )
    page.js(
        "(() => { const s = document.querySelector('#efficiency-table input.search'); s.value = '';"
        " s.dispatchEvent(new Event('input', {bubbles: true})); })()"
    )


def test_hovering_a_point_shows_its_cell(page):
    data = page.js("JSON.parse(document.getElementById('report-data').textContent)")
    cell = next(c for c in data["cells"] if c["state"] == "done" and c["method"] == "random")
    selector = f"#plot path.pt[data-cell='{cell['cell_id']}']"
    assert page.js(f'document.querySelector("{selector}") !== null')
    assert page.js("document.getElementById('tip').hidden")
    x, y = page.centre(selector)
    page.mouse("mouseMoved", x, y)
    page.wait_for("!document.getElementById('tip').hidden")
    tip = page.js("document.getElementById('tip').innerText")
    assert cell["series_label"] in tip and cell["name"] in tip
    for expected in (
        f"ratio {cell['ratio']}",
        f"seed {cell['seed']}",
        f"layer {cell['layer']}",
        f"accuracy {100 * cell['accuracy']:.1f} %",
        f"speed-up {cell['speedup']:.2f}×",
        f"protocol {cell['protocol_label']}",
    ):
        assert expected in tip, (expected, tip)
    save("hover", page.screenshot())
    page.mouse("mouseMoved", 5, 5)
    page.wait_for("document.getElementById('tip').hidden")

"""The notebooks in a real JupyterLab, driven in Debian's headless Chromium through Playwright.

The test starts JupyterLab on 127.0.0.1 (own token, own state directories) and opens a copy of
every notebook as a user would: the kept full-scale figures must render from the stored
outputs at once (no kernel needed) and no output may show an error; each rendered figure is
screenshotted. Notebook 03 is then run (all cells): the budget slider must appear, and moving
it must change the student shown, its metrics and its diagram. Every wait is on a state (the
kernel idle, an element present, a text changed), within one generous deadline, never a fixed
pause. Screenshots go to ``ci-artifacts/browser/`` (git-ignored).

Playwright cannot download its own browser here: it drives ``/usr/bin/chromium``
(``.ci/install-browser.sh`` installs it). Without Chromium or Playwright the test is skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NOTEBOOK = ROOT / "notebooks" / "03_distillation_results.ipynb"
CHROMIUM = Path(os.environ.get("RECNB_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
RUN_TIMEOUT_S = 600  # the notebook runs its small pipeline inside the browser session
STATE_TIMEOUT_S = 300  # the longest wait for one state (a busy machine is slow, not wrong)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _requirements() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found (install it with .ci/install-browser.sh)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed"
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        return "jupyterlab is not installed"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLab:
    """A JupyterLab server on localhost with its state in ``home``; stopped by its PID."""

    def __init__(self, root_dir: Path, home: Path, env: dict):
        self.port, self.token = free_port(), "recnb-browser-test"
        state = {
            name: home / name.lower()
            for name in (
                "JUPYTER_CONFIG_DIR",
                "JUPYTER_DATA_DIR",
                "JUPYTER_RUNTIME_DIR",
                "JUPYTERLAB_SETTINGS_DIR",
                "JUPYTERLAB_WORKSPACES_DIR",
                "IPYTHONDIR",
            )
        }
        for p in state.values():
            p.mkdir(parents=True, exist_ok=True)
        self.env = dict(env, **{k: str(v) for k, v in state.items()})
        # render every cell (JupyterLab 4 virtualises long notebooks: off-screen prompts and
        # widgets would not be in the page) and fetch no news (no network here)
        settings = state["JUPYTERLAB_SETTINGS_DIR"]
        for plugin, value in (("notebook-extension/tracker", {"windowingMode": "none"}),
                              ("apputils-extension/notification", {"fetchNews": "false"})):
            path = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))
        self.log = open(home / "jupyterlab.log", "w")  # noqa: SIM115 (closed by stop())
        cmd = [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={root_dir}",
            "--allow-root",
            "--ServerApp.disable_check_xsrf=False",
            "--LabApp.news_url=",
            "--LabServerApp.open_browser=False",
        ]
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.proc.returncode}; see {self.log.name}")
            try:
                with urllib.request.urlopen(self.url("api/status"), timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"JupyterLab did not answer within {timeout:.0f}s; see {self.log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


PROMPTS_JS = (
    "() => [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt')]"
    ".map(p => p.textContent.trim())"
)
FAILED_JS = "() => document.querySelector('.jp-NotebookPanel .jp-OutputArea-output .ansi-red-fg') !== null"


def run_all_cells(page) -> None:
    """Run All Cells from the Run menu; accept a "Select Kernel" dialog if one is open."""
    dialog = page.locator(".jp-Dialog .jp-mod-accept")
    if dialog.count():
        dialog.first.click()
    page.locator(".jp-NotebookPanel-toolbar [data-status='idle']").wait_for(timeout=STATE_TIMEOUT_S * 1000)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


def run_until_done(page, timeout_s: float | None = None) -> list:
    """Run all cells and wait until every code cell shows an execution count (or a cell
    failed). If nothing started (a kernel dialog swallowed the command), run again."""
    run_all_cells(page)
    timeout_s = timeout_s or RUN_TIMEOUT_S
    deadline, started, tries = time.time() + timeout_s, time.time(), 1
    while time.time() < deadline:
        prompts = page.evaluate(PROMPTS_JS)
        if prompts and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts):
            return prompts
        if page.evaluate(FAILED_JS):
            raise AssertionError(
                "a cell failed: " + page.locator(".jp-OutputArea-output .ansi-red-fg").first.inner_text()[:800]
            )
        dialog = page.locator(".jp-Dialog .jp-mod-accept")
        if dialog.count() and tries < 4:  # "Select Kernel" swallowed the command: accept, run again
            log("kernel dialog open: accepting it and running all cells again")
            run_all_cells(page)
            started, tries = time.time(), tries + 1
            continue
        idle = page.locator(".jp-NotebookPanel-toolbar [data-status='idle']").count() > 0
        waiting = sum(p == "[ ]:" for p in prompts)
        if idle and "[*]:" not in prompts and waiting > len(prompts) // 2 and time.time() - started > 15 and tries < 4:
            log(f"nothing ran ({waiting} of {len(prompts)} cells unrun), running all cells again")
            run_all_cells(page)
            started, tries = time.time(), tries + 1
        time.sleep(1)
    raise TimeoutError(f"cells still running after {timeout_s:.0f}s: {page.evaluate(PROMPTS_JS)}")


def shots_dir() -> Path:
    shots = Path(os.environ.get("RECNB_CI_ARTIFACTS", ROOT / "ci-artifacts")) / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    return shots


def wait_for(predicate, what: str, timeout_s: float = STATE_TIMEOUT_S, every_s: float = 0.5):
    """Poll ``predicate`` until it returns a truthy value; TimeoutError naming ``what``."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise TimeoutError(f"{what}: not reached within {timeout_s:.0f}s")


def kernel_idle(page) -> bool:
    return page.locator(".jp-NotebookPanel-toolbar [data-status='idle']").count() > 0


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    reason = _requirements()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("lab")
    work = tmp / "lab"
    work.mkdir()
    for nb in NOTEBOOKS:  # copies: JupyterLab never autosaves the stored notebooks
        shutil.copy(nb, work / nb.name)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    server = JupyterLab(work, tmp / "home", env)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def open_notebook(pw_browser, lab, name: str):
    page = pw_browser.new_page(viewport={"width": 1400, "height": 1000})
    # reset: a fresh workspace with this notebook alone (no tab restored from an earlier test)
    page.goto(lab.url(f"lab/tree/{name}") + "&reset", timeout=STATE_TIMEOUT_S * 1000)
    page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").first.wait_for(timeout=STATE_TIMEOUT_S * 1000)
    return page


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_opens_with_its_kept_figures(lab, path):
    """Opened, not run: every stored plotly figure renders, no output shows an error, and each
    figure is screenshotted (``NN_figK.png``) for a person to look at."""
    from playwright.sync_api import sync_playwright

    stored = json.loads(path.read_text())
    n_figures = sum("application/vnd.plotly.v1+json" in o.get("data", {})
                    for c in stored["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []))
    assert n_figures, f"{path.name} stores no figure"
    shots = shots_dir()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = open_notebook(browser, lab, path.name)
        try:
            figures = page.locator(".jp-NotebookPanel:visible .jp-OutputArea-output.js-plotly-plot")
            wait_for(lambda: figures.count() >= n_figures, f"{path.name}: {n_figures} stored figures rendered")
            log(f"{path.name}: {figures.count()} figures rendered from the stored outputs")
            text = page.locator(".jp-NotebookPanel:visible").first.inner_text()
            assert "Error displaying widget" not in text and "Traceback" not in text
            for k in range(figures.count()):
                fig = figures.nth(k)
                fig.scroll_into_view_if_needed(timeout=STATE_TIMEOUT_S * 1000)
                fig.screenshot(path=str(shots / f"{path.stem[:2]}_fig{k + 1}.png"), timeout=STATE_TIMEOUT_S * 1000)
        except Exception:
            page.screenshot(path=str(shots / f"{path.stem[:2]}_failure.png"))
            raise
        finally:
            browser.close()


def test_notebook_03_in_jupyterlab(lab):
    from playwright.sync_api import Error as PlaywrightError

    try:
        _drive_notebook_03(lab)
    except (PlaywrightError, TimeoutError) as exc:  # a browser hiccup on a loaded machine, not a wrong result
        log(f"first attempt failed ({type(exc).__name__}: {str(exc)[:200]}); one retry in a fresh page")
        _drive_notebook_03(lab)


def _drive_notebook_03(lab):
    from playwright.sync_api import sync_playwright

    shots = shots_dir()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = open_notebook(browser, lab, NOTEBOOK.name)
        try:
            log("notebook open")
            prompts = run_until_done(page)
            log(f"all {len(prompts)} code cells ran")
            wait_for(lambda: kernel_idle(page), "kernel idle after running all cells")
            explorer = page.locator(".recnb-explorer").first
            wait_for(lambda: explorer.count() > 0, "the budget explorer widget rendered (widget comm open)")
            explorer.scroll_into_view_if_needed()
            slider = explorer.locator(".widget-slider").first
            wait_for(slider.is_visible, "the budget slider visible")
            name = explorer.locator(".recnb-arch-name")
            table = explorer.locator(".recnb-arch-metrics")
            readout = explorer.locator(".widget-readout").first
            diagram = explorer.locator(".recnb-arch-diagram")
            wait_for(lambda: "student:" in name.inner_text() and "% of the teacher" in table.inner_text(),
                     "the explorer's first choice shown")
            before = (name.inner_text(), table.inner_text(), readout.inner_text(), diagram.inner_html())
            explorer.screenshot(path=str(shots / "03_explorer_before.png"))

            handle = explorer.locator(".noUi-handle").first
            for _ in range(2):  # two stops: from a hand-made student to the searched one
                old = readout.inner_text()
                handle.focus()
                handle.press("ArrowRight")
                wait_for(lambda old=old: readout.inner_text() != old, "the slider moved")
            wait_for(lambda: kernel_idle(page), "kernel idle after the slider moved")
            wait_for(lambda: name.inner_text() != before[0] and table.inner_text() != before[1],
                     "the explorer shows another choice")
            wait_for(lambda: diagram.inner_html() != before[3], "the diagram changed")
            after = (name.inner_text(), table.inner_text(), readout.inner_text(), diagram.inner_html())
            explorer.screenshot(path=str(shots / "03_explorer_after.png"))
            log(f"slider moved: {before[2]!r} -> {after[2]!r}, {before[0]!r} -> {after[0]!r}")
        except Exception:
            page.screenshot(path=str(shots / "03_failure.png"))
            raise
        finally:
            browser.close()

"""Notebook 04 in a real browser: `course lab` headless, Debian's Chromium driven by Selenium.

1. With the widget manager (what a student sees): run the whole notebook, find the saliency
   explorer by what it is (a box with the title search field and an HTML view of words), and check
   that its words are shaded in more than one colour, the most salient one fully.
2. Without the widget manager (JupyterLab with @jupyter-widgets/jupyterlab-manager disabled, as in
   a viewer that cannot run widgets): open the notebook saved by run 1 and check that the static
   heatmap shows coloured words and the explorer falls back to its text form instead of breaking.

Screenshots go to build/browser-test/. Skipped, with the reason, where Chromium, its driver or
Selenium are missing (`.ci/run` installs Debian's chromium and chromium-driver).
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
OUT = ROOT / "build" / "browser-test"
NOTEBOOK = "04_expert_gru_end_to_end.ipynb"
HEAT = 'span[style*="background: rgba(220, 40, 40"]'  # the words of course_lib.widgets.saliency_html

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip("Chromium is not installed: apt-get install chromium chromium-driver (Debian), "
                "or run .ci/run, which does", allow_module_level=True)

from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses Debian's chromium paths")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """`course lab` on a free port with a token, its settings and workspaces in a temporary folder."""

    def __init__(self, tmp: Path, widgets: bool):
        self.port, self.token = _free_port(), uuid.uuid4().hex
        config = tmp / f"jupyter-config-{'widgets' if widgets else 'static'}"
        (config / "labconfig").mkdir(parents=True)
        if not widgets:
            (config / "labconfig" / "page_config.json").write_text(
                json.dumps({"disabledExtensions": {"@jupyter-widgets/jupyterlab-manager": True}}))
        # every cell in the page, not only those scrolled into view, so the checks see all outputs
        tracker = tmp / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
        tracker.parent.mkdir(parents=True, exist_ok=True)
        tracker.write_text(json.dumps({"windowingMode": "none"}))
        env = dict(os.environ, JUPYTER_CONFIG_DIR=str(config), COURSE_TIER="tiny")
        env.pop("DISPLAY", None)  # `course lab` then starts headless, as on a server
        self.log = open(tmp / f"lab-{'widgets' if widgets else 'static'}.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "course_lib.cli", "lab", f"--ServerApp.port={self.port}",
             "--ServerApp.port_retries=0", "--ServerApp.allow_root=True", f"--IdentityProvider.token={self.token}",
             f"--LabApp.user_settings_dir={tmp / 'settings'}", f"--LabApp.workspaces_dir={tmp / 'workspaces'}"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"{self.url('api/status')}", timeout=2)
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"course lab exited with {self.proc.returncode}; see {self.log.name}")
                time.sleep(0.5)
        raise RuntimeError(f"course lab did not answer within 120 s; see {self.log.name}")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _browser(tmp: Path):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    # the flags Chromium needs headless, as root, on a machine whose network is closed
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={tmp / 'chromium'}"):
        opts.add_argument(flag)
    return webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))


def _open(driver, lab: Lab, rel: str):
    driver.get(lab.url(f"lab/tree/{rel}"))
    WebDriverWait(driver, 120).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell"))
    # the kernel is up when the status bar says "Python 3 (ipykernel) | Idle" and no dialog is open
    WebDriverWait(driver, 180).until(lambda d: _accept_dialogs(d) or (
        "| Idle" in d.find_element(By.TAG_NAME, "body").text and not d.find_elements(By.CSS_SELECTOR, ".jp-Dialog")))


def _accept_dialogs(driver) -> None:
    """Accept what JupyterLab asks on the way (older releases ask which kernel to start)."""
    for button in driver.find_elements(By.CSS_SELECTOR, ".jp-Dialog .jp-Dialog-button.jp-mod-accept"):
        try:
            button.click()
        except Exception:  # the dialog closed by itself meanwhile
            pass


def _menu(driver, menu: str, command: str):
    item = next(e for e in driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-itemLabel") if e.text == menu)
    item.click()
    WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, f'li[data-command="{command}"]'))
    driver.find_element(By.CSS_SELECTOR, f'li[data-command="{command}"]').click()


def _save(driver) -> None:
    try:
        _menu(driver, "File", "docmanager:save")
    except Exception:  # a menu that did not open in time: the keyboard does the same
        driver.find_element(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Notebook").click()
        ActionChains(driver).key_down(Keys.CONTROL).send_keys("s").key_up(Keys.CONTROL).perform()


def _saved_heatmap() -> bool:
    nb = nbformat.read(OUT / NOTEBOOK, as_version=4)
    return any("rgba(220, 40, 40" in str(c.outputs) for c in nb.cells if c.cell_type == "code")


def _colours(driver, element) -> list[str]:
    return driver.execute_script(
        "return Array.from(arguments[0].querySelectorAll(arguments[1])).map(s => getComputedStyle(s).backgroundColor)",
        element, HEAT)


def _assert_heatmap(driver, element, what: str):
    words = element.find_elements(By.CSS_SELECTOR, HEAT)
    assert len(words) >= 5 and all(w.text.strip() for w in words[:5]), f"{what}: too few words ({len(words)})"
    colours = _colours(driver, element)
    assert len(set(colours)) >= 3, f"{what}: the words are not shaded by saliency: {sorted(set(colours))[:5]}"
    assert "rgb(220, 40, 40)" in colours, f"{what}: no word has the full colour of the most salient word"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    OUT.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(ROOT / "solutions" / NOTEBOOK, as_version=4)
    for cell in nb.cells:  # start from a clean notebook: what shows must come from this run
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, OUT / NOTEBOOK)
    return tmp_path_factory.mktemp("browser")


def test_saliency_widget_renders_coloured_words(workdir):
    lab = Lab(workdir, widgets=True)
    driver = _browser(workdir)
    try:
        _open(driver, lab, f"build/browser-test/{NOTEBOOK}")
        _menu(driver, "Run", "runmenu:run-all")
        explorer = "//div[contains(@class,'widget-vbox')][.//input[@placeholder='words of the title']][.//div[contains(@class,'widget-html')]]"
        try:
            box = WebDriverWait(driver, 600).until(
                lambda d: _accept_dialogs(d) or next(
                    (b for b in d.find_elements(By.XPATH, explorer) if b.find_elements(By.CSS_SELECTOR, HEAT)), None))
        except TimeoutException:
            driver.save_screenshot(str(OUT / "saliency_widget_timeout.png"))
            errors = [e.text[:300] for e in driver.find_elements(By.CSS_SELECTOR, ".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']")]
            raise AssertionError(f"the saliency explorer never showed coloured words; stderr outputs: {errors[:3]}")
        _assert_heatmap(driver, box, "saliency explorer")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
        box.screenshot(str(OUT / "saliency_widget.png"))
        WebDriverWait(driver, 600).until(lambda d: "| Idle" in d.find_element(By.TAG_NAME, "body").text)
        # save, then wait until the file holds the static heatmap: the check below opens what this run saved
        WebDriverWait(driver, 120, poll_frequency=5).until(lambda d: _save(d) or _saved_heatmap())
    finally:
        driver.quit()
        lab.stop()
    assert (OUT / "saliency_widget.png").stat().st_size > 5000


def test_static_fallback_without_widget_manager(workdir):
    if not _saved_heatmap():
        pytest.skip("needs the notebook run and saved by test_saliency_widget_renders_coloured_words")
    lab = Lab(workdir, widgets=False)
    driver = _browser(workdir)
    try:
        _open(driver, lab, f"build/browser-test/{NOTEBOOK}")
        outputs = driver.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output")
        heat = [o for o in outputs if o.find_elements(By.CSS_SELECTOR, HEAT)]
        assert heat, "no output shows the static saliency heatmap"
        assert not driver.find_elements(By.CSS_SELECTOR, ".widget-vbox"), "widgets rendered although the manager is off"
        assert any(o.text.startswith("VBox(") for o in outputs), "the explorer's output shows no text fallback"
        _assert_heatmap(driver, heat[0], "static heatmap")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", heat[0])
        heat[0].screenshot(str(OUT / "saliency_static.png"))
    finally:
        driver.quit()
        lab.stop()

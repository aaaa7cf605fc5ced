"""The inspectors in a real browser: JupyterLab on 127.0.0.1 driven by Debian's headless Chromium (selenium).

Each demo notebook (`32_advantage`: the advantage inspector, `33_nft`: the noised-state inspector) is opened in
JupyterLab and run with Run > Run All Cells. The test then checks that the inspector's slider renders, that moving it
changes the figure the widget shows, and that no cell shows an error. Screenshots go to `runs/browser/`.
Chromium and chromedriver come from Debian (`apt-get install chromium chromium-driver`; `.ci/run` installs them);
when the browser cannot start the test fails, it is not skipped.
"""
import json, os, secrets, shutil, socket, subprocess, sys, time, urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT/'runs'/'browser'
CHROMIUM, CHROMEDRIVER = '/usr/bin/chromium', '/usr/bin/chromedriver'
# the inspector demos: notebook -> the slider's description
DEMOS = {'32_advantage.ipynb': 'rank', '33_nft.ipynb': 't'}
ACTIVE = '.jp-NotebookPanel:not(.lm-mod-hidden) '   # CSS: inside the notebook tab on show


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def demo_copy(src: Path, dst: Path) -> None:
    "The notebook with a python3 kernelspec (nbdev-clean strips it), so that JupyterLab asks for no kernel."
    nb = json.loads(src.read_text())
    nb['metadata']['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}
    dst.write_text(json.dumps(nb))


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    "JupyterLab on 127.0.0.1 (free port, token, temporary root and config): `(base url, token)`."
    root, cfg = tmp_path_factory.mktemp('lab_root'), tmp_path_factory.mktemp('lab_config')
    for name in DEMOS: demo_copy(ROOT/'nbs'/name, root/name)
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, 'JUPYTER_CONFIG_DIR': str(cfg/'config'), 'JUPYTER_RUNTIME_DIR': str(cfg/'runtime'),
           'MPLBACKEND': 'module://matplotlib_inline.backend_inline', 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT)}
    cmd = [sys.executable, '-m', 'jupyterlab', '--no-browser', '--ip=127.0.0.1', f'--port={port}',
           f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={root}', '--ServerApp.allow_root=True',
           f'--LabApp.user_settings_dir={cfg/"settings"}', f'--LabApp.workspaces_dir={cfg/"workspaces"}',
           '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate']
    news = cfg/'settings'/'@jupyterlab'/'apputils-extension'
    news.mkdir(parents=True)   # no "official Jupyter news?" toast over the screenshots
    (news/'notification.jupyterlab-settings').write_text(json.dumps({'fetchNews': 'false'}))
    log = open(cfg/'lab.log', 'w')
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    url = f'http://127.0.0.1:{port}'
    try:
        ready = False
        for _ in range(120):
            if proc.poll() is not None: break
            try:
                urllib.request.urlopen(f'{url}/api/status?token={token}', timeout=2); ready = True; break
            except OSError: time.sleep(0.5)
        if not ready:
            pytest.fail(f"JupyterLab did not answer on {url} within a minute (rc {proc.poll()}):\n{(cfg/'lab.log').read_text()[-3000:]}")
        yield url, token
    finally:
        proc.terminate()
        try: proc.wait(20)
        except subprocess.TimeoutExpired: proc.kill()
        log.close()


@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    "Headless Debian Chromium through selenium; a clear failure (never a skip) when it cannot start."
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing: pytest.fail(f"{', '.join(missing)} missing: install Debian's chromium and chromium-driver "
                            "(`apt-get install -y chromium chromium-driver`; .ci/run does)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
              '--disable-background-networking', '--disable-component-update', '--disable-sync',
              '--disable-dev-shm-usage', '--window-size=1500,1100',
              f'--user-data-dir={tmp_path_factory.mktemp("chromium_profile")}'):
        opts.add_argument(a)
    try: driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    except Exception as e: pytest.fail(f"headless Chromium did not start: {type(e).__name__}: {e}")
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


def wait_for(fn, timeout: float, what: str, poll: float = 0.5, detail=None):
    "Poll `fn` until it returns something truthy; fail naming `what` (and `detail()`) after `timeout` seconds."
    end = time.time() + timeout
    while time.time() < end:
        try:
            v = fn()
            if v: return v
        except Exception: pass   # the page is still building the element
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}" + (f": {detail()}" if detail else ""))


def click_menu(driver, menu: str, item: str) -> None:
    "Click `menu` in JupyterLab's menu bar, then its entry `item`."
    from selenium.webdriver.common.by import By
    bar = wait_for(lambda: [e for e in driver.find_elements(By.CSS_SELECTOR, '.lm-MenuBar-itemLabel') if e.text == menu],
                   30, f"the {menu!r} menu")
    bar[0].click()
    entry = wait_for(lambda: [e for e in driver.find_elements(By.CSS_SELECTOR, '.lm-Menu-itemLabel') if e.text == item],
                     10, f"the {menu} > {item!r} entry")
    entry[0].click()


def accept_kernel_dialog(driver, wait: float = 3.0) -> None:
    "JupyterLab sometimes asks which kernel to start although the notebook names one: take its preselected python3."
    from selenium.webdriver.common.by import By
    end = time.time() + wait
    while time.time() < end:
        for d in driver.find_elements(By.CSS_SELECTOR, '.jp-Dialog'):
            if 'Select Kernel' in d.text: d.find_element(By.CSS_SELECTOR, '.jp-Dialog-button.jp-mod-accept').click(); return
        time.sleep(0.25)


def run_all(driver, url: str, token: str, name: str) -> None:
    "Open notebook `name` in JupyterLab, Run > Run All Cells, and wait until every code cell has run."
    from selenium.webdriver.common.by import By
    driver.get(f'{url}/lab/tree/{name}?reset&token={token}')   # reset: no tabs restored from an earlier page
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, ACTIVE + '.jp-CodeCell'), 60, f"{name}'s cells")
    accept_kernel_dialog(driver)
    click_menu(driver, 'Run', 'Run All Cells')
    prompts = lambda: [e.text for e in driver.find_elements(By.CSS_SELECTOR, ACTIVE + '.jp-CodeCell .jp-InputArea-prompt')]
    # every code cell shows "[n]:", none "[*]:" (queued or running) or "[ ]:" (not run)
    # (an error stops Run All, leaving later cells unrun: the caller's check reports it)
    wait_for(lambda: errors_shown(driver) or ((p := prompts()) and all(s.strip('[]: ').isdigit() for s in p)), 300, f"{name}'s cells to finish",
             detail=lambda: f"prompts {prompts()}" + (browser_shot(driver, f'{Path(name).stem}_timeout.png') or ''))


def browser_shot(driver, file: str) -> str:
    "Save a screenshot of the page to runs/browser/`file`; returns where, for a failure message."
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS/file))
    return f" (screenshot: {SHOTS/file})"


def outputs_text(driver) -> str:
    "The text of the active notebook's last outputs, for a failure message."
    from selenium.webdriver.common.by import By
    return ' | '.join(e.text[:200] for e in driver.find_elements(By.CSS_SELECTOR, ACTIVE + '.jp-OutputArea-output')[-4:])


def errors_shown(driver) -> list[str]:
    "Tracebacks in cell outputs (JupyterLab renders a cell's error as stderr) and widgets that failed to display."
    from selenium.webdriver.common.by import By
    err = [e.text[:400] for e in driver.find_elements(By.CSS_SELECTOR, ACTIVE + '[data-mime-type="application/vnd.jupyter.stderr"]')
           if 'Traceback' in e.text or 'Error' in e.text]
    return err + [e.text[:200] for e in driver.find_elements(By.CSS_SELECTOR, ACTIVE + '.jp-OutputArea-output')
                  if 'Error displaying widget' in e.text or 'Error rendering' in e.text]


def inspector(driver, label: str):
    "The inspector widget whose slider is labelled `label`: `(its box, the slider's handle, the figure's <img>)`."
    from selenium.webdriver.common.by import By
    def find():
        for box in driver.find_elements(By.CSS_SELECTOR, ACTIVE + '.widget-vbox'):
            sl = box.find_elements(By.CSS_SELECTOR, '.widget-slider')
            if sl and sl[0].find_element(By.CSS_SELECTOR, '.widget-label').text.strip() == label:
                imgs = box.find_elements(By.CSS_SELECTOR, '.widget-output img')
                if imgs: return box, sl[0].find_element(By.CSS_SELECTOR, '.noUi-handle'), imgs[0]
    return wait_for(find, 60, f"the inspector with slider {label!r} and its figure",
                    detail=lambda: browser_shot(driver, f'inspector_{label}_timeout.png') + f"; outputs: {outputs_text(driver)}")


@pytest.mark.parametrize('name', list(DEMOS))
def test_inspector_renders_and_its_slider_changes_the_figure(lab, browser, name):
    from selenium.webdriver.common.keys import Keys
    url, token = lab
    SHOTS.mkdir(parents=True, exist_ok=True)
    stem = Path(name).stem
    run_all(browser, url, token, name)
    assert not (e := errors_shown(browser)), f"{name} shows errors after Run All:\n" + "\n---\n".join(e)
    box, handle, img = inspector(browser, DEMOS[name])
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", box)
    time.sleep(0.5)
    before_src, before_png = img.get_attribute('src'), box.screenshot_as_png
    (SHOTS/f'{stem}_before.png').write_bytes(before_png)
    handle.click()
    handle.send_keys(Keys.ARROW_RIGHT)   # one slider step: rank 0 -> 1, or t 0.50 -> 0.55
    wait_for(lambda: inspector(browser, DEMOS[name])[2].get_attribute('src') != before_src, 60,
             f"{name}'s figure to change after the slider moved")
    time.sleep(0.5)
    box, _, img = inspector(browser, DEMOS[name])
    after_png = box.screenshot_as_png
    (SHOTS/f'{stem}_after.png').write_bytes(after_png)
    browser.save_screenshot(str(SHOTS/f'{stem}_page.png'))
    assert after_png != before_png, "the slider moved but the widget looks the same"
    assert not (e := errors_shown(browser)), f"{name} shows errors after the slider moved:\n" + "\n---\n".join(e)

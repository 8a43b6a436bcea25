"""A headless Chromium for the browser tests: find it, install it if we may, start it.

Debian's packages `chromium` and `chromium-driver` ship a browser and its matching
chromedriver, so selenium needs no download of its own (Selenium Manager would fetch a
driver from the internet, which CI does not have). When they are missing and we are root
with apt-get, the test setup installs them; anywhere else the tests skip, saying why.

Chromium phones home at start (component updates, sync, field trials), and Gradio's page
asks a CDN for a script it does not need locally. The flags below turn the phoning off, and
the resolver rule makes every host but the loopback unresolvable, so nothing leaves the
machine and a machine without internet sees no stalls.
"""

from __future__ import annotations

import os
import shutil
import subprocess

PACKAGES = ("chromium", "chromium-driver")
BROWSER_NAMES = ("chromium", "chromium-browser")
DRIVER_NAME = "chromedriver"
APT_TIMEOUT_S = 900            # apt-get update + ~100 MB of packages on a slow mirror
DPKG_LOCK_WAIT_S = 300         # another apt run (a colleague's) may hold the dpkg lock
CHROME_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-default-apps",
    "--disable-extensions", "--mute-audio",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
)


class BrowserUnavailable(RuntimeError):
    """No browser here and none can be installed; the message says why (a skip reason)."""


def find_browser() -> tuple[str, str] | None:
    """(chromium path, chromedriver path), or None when either is missing."""
    browser = next(filter(None, map(shutil.which, BROWSER_NAMES)), None)
    driver = shutil.which(DRIVER_NAME)
    return (browser, driver) if browser and driver else None


def ensure_browser() -> tuple[str, str]:
    """Find chromium + chromedriver, installing Debian's packages when we can."""
    found = find_browser()
    if found:
        return found
    hint = f"install them with: apt-get install -y {' '.join(PACKAGES)}"
    if shutil.which("apt-get") is None:
        raise BrowserUnavailable(f"chromium/chromedriver are missing and there is no apt-get "
                                 f"here; {hint} (or your system's equivalent)")
    if os.geteuid() != 0:
        raise BrowserUnavailable(f"chromium/chromedriver are missing and this is not root, so "
                                 f"the test cannot install them; {hint}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    lock = f"-oDPkg::Lock::Timeout={DPKG_LOCK_WAIT_S}"
    for cmd in (["apt-get", lock, "update"], ["apt-get", lock, "install", "-y", *PACKAGES]):
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True,
                                  timeout=APT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise BrowserUnavailable(f"{' '.join(cmd)} took over {APT_TIMEOUT_S} s") from None
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise BrowserUnavailable(f"{' '.join(cmd)} failed: {' / '.join(tail)}")
    found = find_browser()
    if not found:
        raise BrowserUnavailable(f"apt-get installed {' '.join(PACKAGES)}, but chromium or "
                                 "chromedriver is still not on PATH")
    return found


def start_driver(user_data_dir: str | os.PathLike, width: int = 1280, height: int = 1000):
    """A headless Chromium under selenium, with a fresh profile in `user_data_dir`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = ensure_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={os.fspath(user_data_dir)}")
    options.add_argument(f"--window-size={width},{height}")
    # An explicit driver path: Selenium Manager (which would download one) never runs.
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))

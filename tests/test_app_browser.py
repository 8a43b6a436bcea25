"""The demo end to end in a real browser: `python -m csm_nb demo` on a loopback port in tiny
mode, driven by selenium through Debian's headless Chromium (installed by browser_setup when
missing and we may; skipped, saying why, only where no browser can be had; gradio and
selenium come with the [demo] and [dev] extras, and their absence is an error, not a skip).

A screenshot of each page lands in pytest's tmp dir and, when $CSM_NB_ARTIFACTS is set, there
too (app-screenshot.png is the one the README shows; copy it to docs/ when the page changes).
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import wave

import pytest

try:                     # a missing package is a broken setup, not a reason to skip
    import gradio  # noqa: F401
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError as err:
    raise ImportError(f"{err}: the browser test needs gradio and selenium; install the extras: "
                      "pip install -e '.[dev,demo]'") from err

from browser_setup import BrowserUnavailable, ensure_browser, start_driver  # noqa: E402

MAX_SECONDS = 0.8            # per turn: 10 frames, about a second of work per turn here
FRAME_S = 0.08
SAMPLE_RATE = 24_000
TWO_TURNS = "Hello there.\nHi, how are you?"
SERVER_START_S = 240         # python + torch + gradio imports and a tiny model, on 2 busy cores
PAGE_LOAD_S = 60
RUN_S = 120                  # two turns take a few seconds; this only bounds a hang
AUDIO_JS = """
const a = document.querySelector(arguments[0] + ' audio');
return a && a.src && a.readyState >= 1 ? [a.duration, a.src] : null;"""


@pytest.fixture(scope="module")
def browser():
    try:
        return ensure_browser()
    except BrowserUnavailable as err:
        pytest.skip(f"no headless Chromium: {err}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(browser, tmp_path_factory):
    """The README's command (`python -m csm_nb demo`) serving on 127.0.0.1:<free port>."""
    tmp = tmp_path_factory.mktemp("demo")
    port = _free_port()
    env = dict(os.environ, CSM_NB_MODE="tiny", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               GRADIO_ANALYTICS_ENABLED="False", GRADIO_TEMP_DIR=str(tmp / "gradio"))
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "csm_nb", "demo", "--host",
                             "127.0.0.1", "--port", str(port), "--max-seconds", str(MAX_SECONDS)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the demo exited ({proc.returncode}):\n"
                            f"{(tmp / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the demo did not answer on {url} within {SERVER_START_S} s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def page(server, tmp_path):
    driver = start_driver(tmp_path / "chromium-profile")
    try:
        driver.get(server)
        WebDriverWait(driver, PAGE_LOAD_S).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#conversation textarea"))
        yield driver
    finally:
        driver.quit()


def _type_conversation(driver, text: str) -> None:
    box = driver.find_element(By.CSS_SELECTOR, "#conversation textarea")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)               # real key presses: the page sees the input events
    if text:
        box.send_keys(text)


def _status(driver) -> str:
    return driver.find_element(By.ID, "status").text


def _artifact(tmp_path, name: str, text: str | None = None) -> None:
    """Keep tmp_path/name (writing `text` there first, and printing it) in $CSM_NB_ARTIFACTS."""
    if text is not None:
        (tmp_path / name).write_text(text)
        print(f"\n{text}", end="")
    if os.environ.get("CSM_NB_ARTIFACTS"):
        os.makedirs(os.environ["CSM_NB_ARTIFACTS"], exist_ok=True)
        shutil.copy(tmp_path / name, os.environ["CSM_NB_ARTIFACTS"])


def _run_number(driver) -> int | None:
    """The server counts finished conversations; the status line says which one it shows."""
    found = re.search(r"Conversation #(\d+) done", _status(driver))
    return int(found.group(1)) if found else None


def _screenshot(driver, tmp_path, name: str) -> None:
    """The whole page (not just the window): grow the window to the page's height first."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(driver.get_window_size()["width"], height + 200)
    driver.save_screenshot(str(tmp_path / name))
    _artifact(tmp_path, name)


def _wav_frames(url: str) -> tuple[int, int]:
    """(sample rate, samples) of the WAV the page's player was given, fetched over loopback."""
    with urllib.request.urlopen(url, timeout=10) as reply, wave.open(reply, "rb") as w:
        return w.getframerate(), w.getnframes()


def test_two_turns_play_as_audio_of_the_expected_length(page, tmp_path):
    _type_conversation(page, TWO_TURNS)
    button = page.find_element(By.ID, "generate")
    button.click()
    start = time.monotonic()
    # One run at a time: the button is disabled while it runs, and a second click is ignored.
    WebDriverWait(page, RUN_S, poll_frequency=0.05).until(
        lambda d: d.find_element(By.ID, "generate").get_attribute("disabled"))
    page.find_element(By.ID, "generate").click()
    whole = WebDriverWait(page, RUN_S, poll_frequency=0.1).until(
        lambda d: d.execute_script(AUDIO_JS, "#conversation-audio"))
    click_to_audio = time.monotonic() - start           # reported, never asserted
    _artifact(tmp_path, "app-timing.txt", f"tiny mode, 2 turns of at most {MAX_SECONDS} s: "
                                          f"click to audio {click_to_audio:.2f} s\n")
    WebDriverWait(page, RUN_S).until(
        lambda d: d.find_element(By.ID, "generate").get_attribute("disabled") is None)

    turns = [page.execute_script(AUDIO_JS, f"#turn-{i}") for i in (1, 2)]
    assert all(turns), "each turn gets its own player"
    assert not any(e.is_displayed() for e in page.find_elements(By.ID, "turn-3"))  # unused
    duration, src = whole
    assert 0 < duration <= 2 * MAX_SECONDS + 1e-3       # the model may end a line early
    assert duration == pytest.approx(sum(d for d, _ in turns), abs=1e-3)
    for d, _ in turns:                                   # whole 80 ms frames
        assert d == pytest.approx(round(d / FRAME_S) * FRAME_S, abs=1e-3)
    # What the player holds, to the sample: the served WAV is the two turns end to end.
    rate, samples = _wav_frames(src)
    assert rate == SAMPLE_RATE and samples == sum(_wav_frames(s)[1] for _, s in turns)
    assert samples / rate == pytest.approx(duration, abs=1e-3)
    assert f"done: 2 turns, {duration:.2f} s of audio" in _status(page)
    first = _run_number(page)
    assert "Turn 2, speaker B: Hi, how are you?" in page.find_element(By.ID, "turn-2").text
    assert "Tiny mode" in page.find_element(By.ID, "mode-banner").text
    _screenshot(page, tmp_path, "app-screenshot.png")

    # The second click above made no run: the next click's one-line conversation is run
    # number 2 (a queued duplicate of the two-turn one would have taken that number).
    _type_conversation(page, "One more line.")
    page.find_element(By.ID, "generate").click()
    WebDriverWait(page, RUN_S).until(lambda d: _run_number(d) not in (None, first))
    assert f"Conversation #{first + 1} done: 1 turn," in _status(page)


def test_an_empty_conversation_and_an_upload_that_is_not_audio_show_messages(page, tmp_path):
    _type_conversation(page, "")
    page.find_element(By.ID, "generate").click()
    WebDriverWait(page, RUN_S).until(lambda d: _status(d).startswith("Error:"))
    assert _status(page).startswith("Error: The conversation is empty: type one line per turn")
    _screenshot(page, tmp_path, "app-error-screenshot.png")

    fake = tmp_path / "not_really.wav"
    fake.write_text("this is a text file with a .wav name")
    page.find_element(By.CSS_SELECTOR, "#upload-A input[type=file]").send_keys(str(fake))
    WebDriverWait(page, PAGE_LOAD_S).until(      # uploaded: the clip's player has replaced the
        lambda d: d.find_elements(                # drop zone (the page only checks the name)
            By.CSS_SELECTOR, "#upload-A [data-testid='waveform-controls']"))
    _type_conversation(page, "Hello.")
    page.find_element(By.ID, "generate").click()
    WebDriverWait(page, RUN_S).until(lambda d: "not_really.wav" in _status(d))
    assert _status(page).startswith("Error: Speaker A: the uploaded file 'not_really.wav' is not "
                                    "audio this app can read")
    assert "Traceback" not in page.find_element(By.TAG_NAME, "body").text
    assert page.execute_script(AUDIO_JS, "#conversation-audio") is None

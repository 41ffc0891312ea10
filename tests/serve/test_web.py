"""The web page in a real headless Chromium (Debian's chromium + chromedriver through selenium; nothing is
downloaded): load the page from a real server, upload a generated video and see it as a playable preview, ask,
see the answer stream in, ask a follow-up, pick the bundled sample video, and save a screenshot as a test
artifact."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from llamavid.testing import ServerProcess

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


OBSERVE = """
window.answerStates = [];
new MutationObserver(() => {
  const bots = document.querySelectorAll("#chat [data-testid='bot']");
  const text = bots.length ? bots[bots.length - 1].textContent : "";
  if (text && text !== window.answerStates[window.answerStates.length - 1]) window.answerStates.push(text);
}).observe(document.querySelector("#chat"), {childList: true, subtree: true, characterData: true});
"""


@pytest.fixture(scope="module")
def web_server(served_files, tmp_path_factory):
    log = tmp_path_factory.mktemp("web-log") / "server.log"
    with ServerProcess(
        ["--model", str(served_files / "model"), "--served-model-name", "tiny"], log=log
    ) as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    if not (shutil.which(CHROMIUM) and shutil.which(DRIVER)):
        if os.environ.get("CI"):
            pytest.fail(
                "chromium and chromium-driver must be installed in CI (apt-get install chromium chromium-driver)"
            )
        pytest.skip("needs Debian's chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,960"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    yield driver
    driver.quit()


def wait_for(condition, timeout: float = 60.0, what: str = "the page"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def bot_messages(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text.strip() for e in driver.find_elements(By.CSS_SELECTOR, "#chat [data-testid='bot']")]


def test_upload_ask_stream_follow_up(web_server, browser, tmp_path, make_video):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    video = make_video(tmp_path / "moving-bar.mp4")
    browser.get(web_server.url + "/")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#question textarea"), what="the question box")
    browser.find_element(By.CSS_SELECTOR, "#video-upload input[type=file]").send_keys(str(video))
    wait_for(
        lambda: "Talking about" in browser.find_element(By.ID, "media-status").text,
        what="the video's features",
    )
    assert "moving-bar.mp4" in browser.find_element(By.ID, "media-status").text
    preview = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#video-upload video"), what="the preview")
    assert preview[0].get_attribute("src"), "the uploaded video plays in the page"

    # record every text the answer shows while it streams in
    browser.execute_script(OBSERVE)
    box = browser.find_element(By.CSS_SELECTOR, "#question textarea")
    box.send_keys("What happens in this video?", Keys.ENTER)
    wait_for(lambda: "media=video" in web_server.log(), what="the first answer to finish")
    wait_for(lambda: len(bot_messages(browser)) == 1 and bot_messages(browser)[0], what="the first answer")
    states = browser.execute_script("return window.answerStates")
    assert len(states) >= 3, f"the answer should appear piece by piece, saw {states}"

    box = browser.find_element(By.CSS_SELECTOR, "#question textarea")
    box.send_keys("And what colour is the bar?", Keys.ENTER)
    wait_for(
        lambda: len(bot_messages(browser)) == 2 and bot_messages(browser)[1], what="the follow-up answer"
    )
    shot = tmp_path / "web-demo.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000

    def video_turns():
        return [line for line in web_server.log().splitlines() if "web-" in line and "media=video" in line]

    # the request's log line is written when it completes, which may be just after the page shows the answer
    wait_for(lambda: len(video_turns()) >= 2, what="the follow-up's log line")
    assert len(video_turns()) >= 2  # both turns showed the video (its features encoded once, at upload)


def test_the_sample_button_shows_and_uses_the_bundled_sample(web_server, browser):
    from selenium.webdriver.common.by import By

    from llamavid.toy.demo import sample_videos

    browser.get(web_server.url + "/")
    wait_for(lambda: browser.find_elements(By.ID, "sample"), what="the sample button")
    browser.find_element(By.ID, "sample").click()
    name = sample_videos()[0]["video"].name
    wait_for(lambda: name in browser.find_element(By.ID, "media-status").text, what="the sample's features")
    preview = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#video-upload video"), what="the preview")
    assert preview[0].get_attribute("src")

"""The chat page in a real browser: streamed answer, clickable citation, highlighted source.

Runs Debian's chromium through its own chromedriver (never selenium-manager, which would try
to download a browser). `.ci/run` installs both; RAG_SKIP_BROWSER=1 skips this module.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = pytest.mark.model

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SEEDS = Path(__file__).resolve().parents[1] / "seeds"
SEED_ID = "000_99490361bb818e87.txt"
ANSWER_TIMEOUT_S = 60
ASSISTANT = ".message.assistant"


@pytest.fixture(scope="session", autouse=True)
def _require_browser() -> None:
    """Fail loudly (not skip) when the browser is missing, before the server is built."""
    if os.environ.get("RAG_SKIP_BROWSER") == "1":
        pytest.skip("RAG_SKIP_BROWSER=1: browser test skipped")
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not found. The chat page test drives Debian's chromium "
            "with its chromedriver; .ci/run installs them (apt-get install chromium "
            "chromium-driver). Set RAG_SKIP_BROWSER=1 to skip this test.",
            pytrace=False,
        )


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    options = Options()
    options.binary_location = str(CHROMIUM)
    profile = tmp_path_factory.mktemp("chromium-profile")
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    browser.set_page_load_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


@contextmanager
def artifacts_on_failure(browser: webdriver.Chrome, tmp_path: Path) -> Iterator[None]:
    """On failure, keep a screenshot, the DOM and the console log in the test's tmp dir."""
    try:
        yield
    except BaseException:
        try:
            browser.save_screenshot(str(tmp_path / "failure.png"))
            (tmp_path / "failure.html").write_text(browser.page_source, encoding="utf-8")
            logs = browser.get_log("browser")
            (tmp_path / "console.json").write_text(json.dumps(logs, indent=2), encoding="utf-8")
            print(f"browser artifacts: {tmp_path}/failure.png, failure.html, console.json")
        except WebDriverException as exc:
            print(f"could not save browser artifacts: {exc}")
        raise


def last_assistant(browser: webdriver.Chrome) -> WebElement | None:
    messages = browser.find_elements(By.CSS_SELECTOR, ASSISTANT)
    return messages[-1] if messages else None


def ask(browser: webdriver.Chrome, api_key: str, question: str) -> WebElement:
    """Type a question, send it, give the API key if the page asks, wait for the end."""
    before = len(browser.find_elements(By.CSS_SELECTOR, ASSISTANT))
    box = browser.find_element(By.ID, "question")
    box.clear()
    box.send_keys(question)
    browser.find_element(By.ID, "send").click()

    key_given = False

    def finished_or_key(b: Any) -> WebElement | bool:
        nonlocal key_given
        messages = b.find_elements(By.CSS_SELECTOR, ASSISTANT)
        if len(messages) > before and messages[-1].get_attribute("data-state") in {
            "done",
            "error",
        }:
            return messages[-1]
        key_field = b.find_elements(By.ID, "api-key")
        if not key_given and key_field and key_field[0].is_displayed():
            # The server wants a key (401): the page shows #api-key and retries once.
            key_field[0].send_keys(api_key + Keys.ENTER)
            key_given = True
        return False

    message: WebElement = WebDriverWait(browser, ANSWER_TIMEOUT_S, poll_frequency=0.2).until(
        finished_or_key, message=f"no finished answer to {question!r}"
    )
    return message


def get_span(base_url: str, api_key: str, doc_id: str, start: int, end: int) -> dict[str, Any]:
    path = "/".join(urllib.parse.quote(part, safe="") for part in doc_id.split("/"))
    request = urllib.request.Request(f"{base_url}/documents/{path}/spans/{start}-{end}?context=300")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    with urllib.request.urlopen(request, timeout=30) as response:
        body: dict[str, Any] = json.load(response)
    return body


def js_errors(browser: webdriver.Chrome) -> list[dict[str, Any]]:
    """Uncaught errors in the page (network 4xx such as the 401 that asks for a key are fine)."""
    return [
        entry
        for entry in browser.get_log("browser")
        if entry.get("level") == "SEVERE" and entry.get("source") == "javascript"
    ]


def mark_in_view(browser: Any) -> bool:
    """The highlighted span overlaps the visible part of the scrolling source text."""
    return bool(
        browser.execute_script(
            "const m = document.querySelector('#source-panel mark');"
            "const p = document.getElementById('source-body').getBoundingClientRect();"
            "const r = m.getBoundingClientRect();"
            "return r.bottom > p.top && r.top < p.bottom;"
        )
    )


def origin_of(url: str) -> str:
    return url.rstrip("/")


@contextmanager
def in_collection(live_server: Any, name: str) -> Iterator[Any]:
    """An HTTP client (with the server's key) over a new collection, deleted afterwards."""
    import httpx

    auth = {"Authorization": f"Bearer {live_server.api_key}"}
    with httpx.Client(base_url=origin_of(live_server.url), headers=auth, timeout=60) as http:
        assert http.post("/collections", json={"name": name}).status_code == 201
        try:
            yield http
        finally:
            assert http.delete(f"/collections/{name}").status_code == 204


def test_answer_streams_with_a_citation_that_opens_the_highlighted_source(
    driver: webdriver.Chrome, live_server: Any, tmp_path: Path
) -> None:
    base = origin_of(live_server.url)
    with artifacts_on_failure(driver, tmp_path):
        driver.get(base + "/")
        driver.get_log("browser")  # start the console log from here
        question = "Who said North Korean workers would be welcomed?"
        message = ask(driver, live_server.api_key, question)

        assert message.get_attribute("data-state") == "done", message.text
        answer = message.find_element(By.CSS_SELECTOR, ".answer").text
        assert "Khusnullin" in answer

        citations = message.find_elements(By.CSS_SELECTOR, ".citation")
        assert citations, "the answer has no clickable citation"
        citation = citations[0]
        assert citation.get_attribute("data-index")
        doc_id = citation.get_attribute("data-doc-id") or ""
        start = int(citation.get_attribute("data-start") or -1)
        end = int(citation.get_attribute("data-end") or -1)
        assert doc_id
        assert 0 <= start < end

        citation.click()
        mark = WebDriverWait(driver, 30).until(
            ec.visibility_of_element_located((By.CSS_SELECTOR, "#source-panel mark")),
            message="the source panel never showed the highlighted span",
        )
        mark_text = mark.get_attribute("textContent")

        served = get_span(base, live_server.api_key, doc_id, start, end)
        assert (served["start"], served["end"]) == (start, end)
        assert mark_text == served["quote"]
        if doc_id.rsplit("/", 1)[-1] == SEED_ID:
            seed_text = (SEEDS / SEED_ID).read_bytes().decode("utf-8-sig")
            assert mark_text == seed_text[start:end]

        # The span is shown in its context, and scrolled into the panel's view.
        body = driver.find_element(By.ID, "source-body").get_attribute("textContent") or ""
        assert served["before"] + served["quote"] + served["after"] in body
        WebDriverWait(driver, 5).until(
            mark_in_view, message="the highlighted span is scrolled out of the panel's view"
        )

        # Inside the lightly marked sentence, the answer span is marked strongly, in the
        # panel and in the message's sources: exactly the answer's characters.
        a_start = int(message.get_attribute("data-answer-start") or -1)
        a_end = int(message.get_attribute("data-answer-end") or -1)
        assert message.get_attribute("data-answer-doc-id") == doc_id
        assert start <= a_start < a_end <= end
        strong = mark.find_element(By.CSS_SELECTOR, "strong.answer-span")
        answer_text = strong.get_attribute("textContent")
        assert answer_text == served["quote"][a_start - start : a_end - start]
        assert "Khusnullin" in (answer_text or "")
        if doc_id.rsplit("/", 1)[-1] == SEED_ID:
            assert answer_text == seed_text[a_start:a_end]
        listed = message.find_element(By.CSS_SELECTOR, ".source-quote strong.answer-span")
        assert listed.get_attribute("textContent") == answer_text

        # Arrow keys move between the citation buttons (the marker, then its source entry).
        marker = message.find_element(By.CSS_SELECTOR, ".citation-marker")
        driver.execute_script("arguments[0].focus()", marker)
        marker.send_keys(Keys.ARROW_RIGHT)
        focused = driver.switch_to.active_element
        assert "source-item" in (focused.get_attribute("class") or "")
        assert focused.get_attribute("data-index") == marker.get_attribute("data-index")
        assert not js_errors(driver)


def test_a_pdf_collection_cites_its_page_with_the_answer_marked(
    driver: webdriver.Chrome, live_server: Any, tmp_path: Path
) -> None:
    """A PDF in a collection of its own, asked through the chat page (?collection=): the
    source panel names the page the citation is printed on, and the strongly marked text
    is the answer's characters of the stored text."""
    from tests.pdfs import Layout, print_pdf

    base = origin_of(live_server.url)
    seed_text = (SEEDS / SEED_ID).read_bytes().decode("utf-8-sig")
    paragraphs = [p for p in seed_text.split("\n") if len(p.split()) > 8]
    printed = print_pdf(paragraphs, Layout(unicode_font=True, footer="Page {page}", max_lines=10))
    with in_collection(live_server, "pdfs") as http:
        r = http.post(
            "/collections/pdfs/documents",
            files={"file": ("seed.pdf", printed.data, "application/pdf")},
        )
        assert r.status_code in (201, 202), r.text
        if r.status_code == 202:
            job_id = r.json()["job"]["id"]
            for _ in range(600):
                state = http.get(f"/collections/pdfs/jobs/{job_id}").json()["state"]
                if state in ("done", "failed"):
                    break
                time.sleep(0.1)
            assert state == "done"
        doc = http.get("/collections/pdfs/documents/seed.pdf").json()
        with artifacts_on_failure(driver, tmp_path):
            driver.get(base + "/?collection=pdfs")
            driver.get_log("browser")
            message = ask(
                driver, live_server.api_key, "Who said North Korean workers would be welcomed?"
            )
            assert message.get_attribute("data-state") == "done", message.text
            citation = message.find_elements(By.CSS_SELECTOR, ".citation")[0]
            assert citation.get_attribute("data-doc-id") == "seed.pdf"
            start = int(citation.get_attribute("data-start") or -1)
            end = int(citation.get_attribute("data-end") or -1)
            starts = doc["page_starts"]
            page = sum(1 for s in starts if s <= start)
            citation.click()
            mark = WebDriverWait(driver, 30).until(
                ec.visibility_of_element_located((By.CSS_SELECTOR, "#source-panel mark")),
            )
            meta = driver.find_element(By.ID, "source-meta").text
            assert f"p. {page}" in meta, meta
            a_start = int(message.get_attribute("data-answer-start") or -1)
            a_end = int(message.get_attribute("data-answer-end") or -1)
            strong = mark.find_element(By.CSS_SELECTOR, "strong.answer-span")
            assert strong.get_attribute("textContent") == doc["text"][a_start:a_end]
            assert mark.get_attribute("textContent") == doc["text"][start:end]
            assert not js_errors(driver)


def test_the_answer_is_marked_exactly_after_characters_outside_the_bmp(
    driver: webdriver.Chrome, live_server: Any, tmp_path: Path
) -> None:
    """Offsets count code points, JS strings UTF-16 units: emoji and math letters before
    the answer (two units each) must not shift the marked answer."""
    text = (
        "🚀🚀 Launch notes 𝑥𝑦. 🛰️ The Quillmouth ferry was built by Anna Brask in 1999. "
        "It sails twice a day."
    )
    base = origin_of(live_server.url)
    with in_collection(live_server, "astral") as http:
        r = http.post("/collections/astral/documents", json={"id": "notes", "text": text})
        assert r.status_code == 201, r.text
        with artifacts_on_failure(driver, tmp_path):
            driver.get(base + "/?collection=astral")
            driver.get_log("browser")
            message = ask(driver, live_server.api_key, "Who built the Quillmouth ferry?")
            assert message.get_attribute("data-state") == "done", message.text
            a_start = int(message.get_attribute("data-answer-start") or -1)
            a_end = int(message.get_attribute("data-answer-end") or -1)
            assert "Brask" in text[a_start:a_end]
            listed = message.find_element(By.CSS_SELECTOR, ".source-quote strong.answer-span")
            assert listed.get_attribute("textContent") == text[a_start:a_end]
            message.find_elements(By.CSS_SELECTOR, ".citation")[0].click()
            strong = WebDriverWait(driver, 30).until(
                ec.visibility_of_element_located(
                    (By.CSS_SELECTOR, "#source-panel mark strong.answer-span")
                ),
            )
            assert strong.get_attribute("textContent") == text[a_start:a_end]
            assert not js_errors(driver)


def test_unanswerable_question_finishes_politely(
    driver: webdriver.Chrome, live_server: Any, tmp_path: Path
) -> None:
    with artifacts_on_failure(driver, tmp_path):
        driver.get(origin_of(live_server.url) + "/")
        message = ask(driver, live_server.api_key, "What is the boiling point of mercury on Mars?")

        assert message.get_attribute("data-state") == "done", message.text
        assert message.find_element(By.CSS_SELECTOR, ".answer").text.strip()
        # The service may or may not abstain here; when it does, nothing is cited.
        if message.get_attribute("data-answered") == "false":
            assert not message.find_elements(By.CSS_SELECTOR, ".citation")


def test_embed_page_shows_snippets_for_this_server(
    driver: webdriver.Chrome, live_server: Any, tmp_path: Path
) -> None:
    origin = origin_of(live_server.url)
    with artifacts_on_failure(driver, tmp_path):
        driver.get(origin + "/embed")
        WebDriverWait(driver, 10).until(
            ec.text_to_be_present_in_element((By.ID, "iframe-snippet"), origin),
            message="the iframe snippet never named this server",
        )
        iframe_snippet = driver.find_element(By.ID, "iframe-snippet").text
        assert f'<iframe src="{origin}/?embed=1"' in iframe_snippet
        script_snippet = driver.find_element(By.ID, "script-snippet").text
        assert f'src="{origin}/static/widget.js"' in script_snippet
        assert f'data-rag-origin="{origin}"' in script_snippet
        demo = driver.find_element(By.ID, "demo-frame")
        assert "embed=1" in (demo.get_attribute("src") or "")


def test_embed_layout_has_no_header(
    driver: webdriver.Chrome, live_server: Any, tmp_path: Path
) -> None:
    with artifacts_on_failure(driver, tmp_path):
        driver.get(origin_of(live_server.url) + "/?embed=1")
        assert driver.find_element(By.ID, "question").is_displayed()
        assert not driver.find_element(By.CSS_SELECTOR, ".app-header").is_displayed()

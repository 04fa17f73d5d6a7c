"""The run's artifacts as a person sees them: the Prefect UI in headless Chromium.

A short training flow runs against the real server; its report artifact must render in the UI
with all six embedded figures loaded, and its table artifact must show the run's accuracies.
Screenshots go to tests/output/ (git-ignored). Chromium is Debian's (`.ci/run` installs it);
without it the test fails rather than skips, so a CI without a browser cannot pass silently.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from mnistnn.report.markdown import FIGURE_CAPTIONS
from tests.e2e.conftest import BIN, REPO, PrefectServer

pytestmark = pytest.mark.e2e

OUTPUT = REPO / "tests" / "output"
EPOCHS = 2
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
RENDER_TIMEOUT_MS = 60_000

FLOW_SCRIPT = """
import json, sys
from flows.training import train_pipeline
result = train_pipeline(
    train_csv=sys.argv[1], test_csv=sys.argv[2], data_dir=sys.argv[3],
    epochs=int(sys.argv[4]), hidden_nodes=20,
)
print("RESULT " + json.dumps(result.to_dict(), default=str))
"""

#: True once every markdown figure (a data: URI <img>) is decoded; JSON of what is there.
FIGURES_JS = """() => {
    const images = Array.from(document.querySelectorAll('img[src^="data:image/png;base64,"]'));
    return images.map(image => ({
        alt: image.alt,
        complete: image.complete,
        width: image.naturalWidth,
        height: image.naturalHeight,
    }));
}"""

#: Every table on the page as rows of cell texts.
TABLES_JS = """() => Array.from(document.querySelectorAll('table')).map(table =>
    Array.from(table.rows).map(row => Array.from(row.cells).map(cell => cell.innerText.trim())))"""


def api_post(server: PrefectServer, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        f"{server.api_url}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def ui_artifact_url(server: PrefectServer, artifact_id: str) -> str:
    """The artifact's page in the server's default UI (v2 under /v2, v1 at the root)."""
    with urllib.request.urlopen(f"{server.url}/ui-settings", timeout=30) as response:
        settings = json.load(response)
    base = settings[f"{settings['default_ui']}_base_url"].rstrip("/")
    return f"{server.url}{base}/artifacts/artifact/{artifact_id}"


def js_number(value: float) -> str:
    """How the UI prints a stored number: 0.798 -> '0.798', 0.0 -> '0' (JavaScript's String)."""
    text = repr(float(value))
    return text.removesuffix(".0")


def launch(playwright: Any) -> Browser:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail(
            "chromium is not installed: the browser test drives Debian's Chromium "
            "(apt-get install chromium; .ci/run does this). It never downloads a browser."
        )
    browser: Browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
    return browser


@pytest.fixture(scope="module")
def trained(
    prefect_server: PrefectServer, small_csvs: tuple[Path, Path], tmp_path_factory
) -> dict[str, Any]:
    """A 2-epoch run of the training flow against the server; its result and artifacts."""
    data_dir = tmp_path_factory.mktemp("browser-data")
    args = (str(small_csvs[0]), str(small_csvs[1]), str(data_dir), str(EPOCHS))
    output = prefect_server.run(str(BIN / "python"), "-c", FLOW_SCRIPT, *args, timeout=300).stdout
    [line] = [line for line in output.splitlines() if line.startswith("RESULT ")]
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    body = {"artifacts": {"flow_run_id": {"any_": [result["flow_run_id"]]}}}
    artifacts = {item["key"]: item for item in api_post(prefect_server, "/artifacts/filter", body)}
    return {"result": result, "artifacts": artifacts}


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    """One headless Chromium page for the module (fails at once when Chromium is missing)."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 900})
        finally:
            browser.close()


def test_report_renders_every_figure(
    page: Page, prefect_server: PrefectServer, trained: dict[str, Any]
) -> None:
    report = trained["artifacts"]["mnist-training-report"]
    assert report["type"] == "markdown"
    assert report["data"].count("](data:image/png;base64,") == len(FIGURE_CAPTIONS) == 6
    page.goto(ui_artifact_url(prefect_server, report["id"]))
    run_name = Path(trained["result"]["run_dir"]).name
    page.get_by_role("heading", name=f"MNIST training run {run_name}").wait_for(
        timeout=RENDER_TIMEOUT_MS
    )
    page.wait_for_function(
        f"""() => {{
            const images = ({FIGURES_JS})();
            return images.length >= 6 && images.every(image => image.complete && image.width > 0);
        }}""",
        timeout=RENDER_TIMEOUT_MS,
    )
    figures = page.evaluate(FIGURES_JS)
    page.screenshot(path=str(OUTPUT / "report.png"), full_page=True)
    assert len(figures) == 6, figures
    assert sorted(figure["alt"] for figure in figures) == sorted(FIGURE_CAPTIONS.values())
    for figure in figures:
        assert figure["width"] > 0 and figure["height"] > 0, f"figure not loaded: {figure}"
    broken = page.evaluate(
        "() => Array.from(document.images).filter(i => i.complete && !i.naturalWidth).length"
    )
    assert broken == 0, "the page shows broken images"


def test_table_shows_the_run_accuracies(
    page: Page, prefect_server: PrefectServer, trained: dict[str, Any]
) -> None:
    table = trained["artifacts"]["mnist-epoch-metrics"]
    assert table["type"] == "table"
    stored = json.loads(table["data"])
    metrics = trained["result"]["metrics"]
    assert [row["epoch"] for row in stored] == list(range(1, EPOCHS + 1))
    assert [row["accuracy"] for row in stored] == [round(m["accuracy"], 4) for m in metrics]

    page.goto(ui_artifact_url(prefect_server, table["id"]))
    page.wait_for_function(
        f"() => ({TABLES_JS})().some(t => t.length > {EPOCHS} && t[0].includes('accuracy'))",
        timeout=RENDER_TIMEOUT_MS,
    )
    page.screenshot(path=str(OUTPUT / "table.png"), full_page=True)
    [shown] = [rows for rows in page.evaluate(TABLES_JS) if "accuracy" in rows[0]]
    header, body = shown[0], shown[1:]
    epoch, accuracy = header.index("epoch"), header.index("accuracy")
    assert [(row[epoch], row[accuracy]) for row in body] == [
        (str(row["epoch"]), js_number(row["accuracy"])) for row in stored
    ]

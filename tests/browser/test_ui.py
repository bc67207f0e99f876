"""The Dagster UI as a user drives it: Debian's chromium through Playwright against `dagster dev`
(webserver + daemon) on a temporary DAGSTER_HOME (the shipped dagster.yaml), DuckDB file and a
300-asset synthetic universe.

A 3-session range launched from the global asset graph's "Materialize all" dialog must run as
ONE run that succeeds, every check of every session must show Passed in the checks' Partitions
view (never Skipped), and the assets' pages must carry the plots and tables. The run's duration
is compared with `factorcov materialize` of the same range, measured in the same test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, DagsterDev, check_statuses, wait_for_runs

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
START, END = "2025-03-31", "2025-04-02"
ASSETS_WITH_CHECKS = [
    "exposures",
    "factor_returns",
    "factor_volatility",
    "factor_correlation",
    "factor_covariance",
    "covariance_report",
]
SHOTS = (
    Path(os.environ.get("FACTORCOV_SCREENSHOTS", ""))
    if os.environ.get("FACTORCOV_SCREENSHOTS")
    else None
)


def _shot(page, tmp_path: Path, name: str) -> None:
    """Screenshots for a human to look at (kept in FACTORCOV_SCREENSHOTS when set)."""
    for folder in filter(None, [tmp_path, SHOTS]):
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def _cli_seconds(tmp_path: Path, dev_settings: Path) -> float:
    """Wall time of `factorcov materialize` for the same range and settings (no DAGSTER_HOME)."""
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env |= {
        "FACTORCOV_DUCKDB": str(tmp_path / "cli.duckdb"),
        "FACTORCOV_SETTINGS": str(dev_settings),
    }
    t0 = time.monotonic()
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "factorcov"),
            "materialize",
            "--start",
            START,
            "--end",
            END,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.monotonic() - t0
    assert done.returncode == 0, done.stdout + done.stderr
    return elapsed


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_ui_range_is_one_run_with_every_check_passed_and_plots(dev: DagsterDev, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(90_000)

        # 1. The global asset graph: "Materialize all…", a 3-session range, "Launch backfill".
        page.goto(f"{dev.url}/asset-groups", wait_until="networkidle")
        page.get_by_role("button", name="Materialize all…").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_role("button", name="Show all partitions").click()
        box = dialog.locator("input[type=text]").first
        box.fill(f"[{START}...{END}]")
        box.press("Enter")
        expect(dialog.get_by_text("3 partitions")).to_be_visible()
        _shot(page, tmp_path, "1-launch-dialog")
        dialog.get_by_role("button", name="Launch backfill").click()

        # 2. One run, successful, over the whole range.
        runs = wait_for_runs(dev, 1, timeout=300)
        time.sleep(5)  # a second run, if the backfill were split, would be queued by now
        runs = wait_for_runs(dev, 1, timeout=300)
        assert len(runs) == 1, runs
        (run,) = runs
        assert run["status"] == "SUCCESS", dev.log.read_text()[-3000:]
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert tags["dagster/asset_partition_range_start"] == START
        assert tags["dagster/asset_partition_range_end"] == END
        run_seconds = run["endTime"] - run["startTime"]

        # 3. Every check of every session: SUCCEEDED, as the checks' Partitions tab counts them.
        for asset in ASSETS_WITH_CHECKS:
            for check, ranges in check_statuses(dev, asset).items():
                assert ranges == [(START, END, "SUCCEEDED")], (asset, check, ranges)
        page.goto(f"{dev.url}/assets/covariance_report?view=checks", wait_until="networkidle")
        page.get_by_text("volatility_tieout").first.click()
        # the check's own tab bar (buttons), not the asset's (links)
        page.locator("button[role=tab]", has_text="Partitions").click()
        expect(page.get_by_text("Passed (3)").first).to_be_visible()
        assert (
            page.get_by_text("Skipped (").count() == 0
            or page.get_by_text("Skipped (0)").count() == page.get_by_text("Skipped (").count()
        )
        _shot(page, tmp_path, "2-check-partitions")

        # 4. The asset pages (latest materialisation = the range's last session): figures as
        # PNG in markdown (opened with "[Show Markdown]") and tables.
        for asset, n_images in [
            ("factor_volatility", 1),
            ("factor_correlation", 1),
            ("factor_returns", 2),
        ]:  # forecast_bias needs 21 sessions for a window: tests/test_ui_metadata.py
            page.goto(f"{dev.url}/assets/{asset}?view=events", wait_until="networkidle")
            expect(page.get_by_text(f"Partition {END} materialized").first).to_be_visible()
            links = page.get_by_text("[Show Markdown]")
            expect(links.first, asset).to_be_visible()
            assert links.count() >= n_images, asset
            links.first.click()
            image = page.get_by_role("dialog").locator("img[src^='data:image/png']")
            expect(image).to_be_visible()
            assert image.evaluate("img => img.naturalWidth") > 300, asset  # a real picture
            _shot(page, tmp_path, f"3-{asset}")
            page.get_by_role("button", name="Close").click()
        page.goto(f"{dev.url}/assets/factor_covariance?view=events", wait_until="networkidle")
        expect(page.get_by_text(f"covariance_{END}").first).to_be_visible()
        expect(page.get_by_role("table").get_by_text("Market").first).to_be_visible()
        _shot(page, tmp_path, "4-factor_covariance")
        page.goto(f"{dev.url}/asset-groups", wait_until="networkidle")
        _shot(page, tmp_path, "5-graph")
        browser.close()

    # 5. As fast as the CLI: the UI's run within 1.5x `factorcov materialize` of the same range.
    settings = tmp_path / "settings.json"
    cli_seconds = _cli_seconds(tmp_path, settings)
    print(f"UI run {run_seconds:.1f} s, factorcov materialize {cli_seconds:.1f} s")
    assert run_seconds <= 1.5 * cli_seconds, (run_seconds, cli_seconds)

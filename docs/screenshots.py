"""Screenshots of the console for the docs: send-as, policy and delivery log at 1280 and 390 px.

Run against a live demo (``make run`` in another terminal, its output kept in a file):

    make run | tee var/run.log
    .venv/bin/python docs/screenshots.py http://localhost:8000 var/run.log

The log is where the demo gateway prints the mail it receives: the script reads the alias's
confirmation code there (without it, the alias stays unconfirmed on the pictures).

It acts as a user would through the console first (allows per-user gateways, adds an alias on
the demo partner server, sends two messages), then saves docs/console-<page>-<width>.png. It uses
Debian's Chromium (/usr/bin/chromium), as the browser tests do.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

DOCS = Path(__file__).resolve().parent
ADMIN, USER, PASSWORD = "admin@example.com", "ann@example.com", "sendgate-demo"
PARTNER = ("ann@partner.example", "localhost", "2587", "ann@partner.example", "partner-demo-secret")
WIDTHS = {"1280": {"width": 1280, "height": 900}, "390": {"width": 390, "height": 844}}
SLOW = 60_000  # ms: the worker does the connection test and the deliveries
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def log_in(page: Page, base: str, email: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("#id_username", email)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("header .whoami")).to_contain_text(email)


def log_out(page: Page) -> None:
    page.get_by_role("button", name="Log out").click()
    expect(page.locator("#id_username")).to_be_visible()


def prepare(page: Page, base: str, gateway_log: Path | None) -> None:
    """Give the pages something to show: a policy change, an alias, two sent messages."""
    log_in(page, base, ADMIN)
    page.goto(f"{base}/domains/")
    page.get_by_role("link", name="example.com").first.click()
    if not page.locator('input[name="allow_user_gateways"][value="1"]').is_checked():
        page.check('input[name="allow_user_gateways"][value="1"]')
        page.get_by_role("button", name="Save").first.click()
    expect(page.locator("#progress")).to_contain_text("Applied to", timeout=SLOW)
    log_out(page)

    log_in(page, base, USER)
    page.goto(f"{base}/settings/send-as/")
    address, host, port, login, password = PARTNER
    if page.get_by_text(address).count() == 0:
        page.fill("#id_address", address)
        page.fill("#id_smtp_host", host)
        page.fill("#id_smtp_port", port)
        page.select_option("#id_smtp_security", "starttls")
        page.fill("#id_smtp_username", login)
        page.fill("#id_smtp_password", password)
        page.get_by_role("button", name="Add address").click()
        page.wait_for_url(re.compile(r"/settings/send-as/\d+/confirm/$"), timeout=SLOW)
        code = confirmation_code(gateway_log) if gateway_log else None
        if code:
            page.fill("#id_code", code)
            page.get_by_role("button", name="Confirm").click()
            expect(page.locator(".flash")).to_contain_text("is confirmed")
    for n in (1, 2):
        page.goto(f"{base}/compose/")
        if n == 2 and page.locator(f'#id_from_address option[value="{address}"]').count():
            page.select_option("#id_from_address", address)  # through the partner server
        page.fill("#id_to", "bob@elsewhere.test")
        page.fill("#id_subject", f"Screenshot message {n}")
        page.fill("#id_body", "Sent for the documentation's screenshots.")
        page.get_by_role("button", name="Send").click()
        page.wait_for_url(re.compile(r"/sent/\d+/$"))
    log_out(page)


def confirmation_code(log: Path) -> str | None:
    """The newest six-digit code the demo gateway printed, waiting for it a while."""
    for _ in range(SLOW // 1000):
        codes = re.findall(r"code[=:] ?(\d{6})\b", log.read_text(errors="replace"))
        if codes:
            return codes[-1]
        time.sleep(1)
    return None


def shoot(page: Page, base: str, email: str, name: str, path: str, ready: str) -> None:
    log_in(page, base, email)
    for width, viewport in WIDTHS.items():
        page.set_viewport_size(viewport)
        page.goto(base + path)
        expect(page.locator(ready).first).to_be_visible(timeout=SLOW)
        page.wait_for_load_state("networkidle")
        target = DOCS / f"console-{name}-{width}.png"
        page.screenshot(path=str(target), full_page=True)
        print(target.relative_to(DOCS.parent))
    log_out(page)


def main(base: str, gateway_log: Path | None) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport=WIDTHS["1280"])
        page.set_default_timeout(SLOW)
        prepare(page, base, gateway_log)
        shoot(page, base, USER, "send-as", "/settings/send-as/", ".deliverability details")
        log_in(page, base, ADMIN)
        page.goto(f"{base}/domains/")
        href = page.get_by_role("link", name="example.com").first.get_attribute("href")
        log_out(page)
        domain_path = href.rstrip("/").rsplit("/", 1)[0]  # /domains/<pk>
        shoot(page, base, ADMIN, "policy", f"{domain_path}/policy/", "#recent-changes")
        shoot(page, base, ADMIN, "delivery-log", f"{domain_path}/delivery/", "table")
        browser.close()


if __name__ == "__main__":
    main(
        sys.argv[1].rstrip("/") if len(sys.argv) > 1 else "http://localhost:8000",
        Path(sys.argv[2]) if len(sys.argv) > 2 else None,
    )

"""The web console against the lab, in a real browser (Debian's Chromium,
headless, driven by Playwright): run by console_lab.rs, which builds the
lab and does what the browser waits to see.

Environment: UI (the console's base URL), OPERATOR (the operator's token),
VPC, VIP, EIP (IDs), NIC_A, NIC_B (the VIP's NICs), AGENT (the agent the
test kills), OUT (where screenshots go). It tells the test where it is by
lines on stdout ("at: holder-a", "at: holder-b") and waits for a line on
stdin before going on. Exits non-zero on the first failed check, saying
which.
"""

import os
import re
import sys
import time

from playwright.sync_api import expect, sync_playwright

UI = os.environ["UI"]
OUT = os.environ["OUT"]


def step(msg):
    print(f"browser: {msg}", flush=True)


def at(mark):
    """Tells the test where the browser is, and waits for its go."""
    print(f"at: {mark}", flush=True)
    line = sys.stdin.readline()
    if not line:
        raise RuntimeError(f"the test went away at {mark}")
    step(f"the test says: {line.strip()}")


def main():
    vpc, vip, eip = os.environ["VPC"], os.environ["VIP"], os.environ["EIP"]
    nic_a, nic_b, agent = os.environ["NIC_A"], os.environ["NIC_B"], os.environ["AGENT"]
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu"],
        )
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        page = context.new_page()
        outside = []
        page.on(
            "request",
            lambda r: outside.append(r.url) if not r.url.startswith(UI) else None,
        )

        step("sign in as the operator")
        page.goto(f"{UI}/ui/login")
        page.fill("#token", os.environ["OPERATOR"])
        page.click("#sign-in")
        expect(page).to_have_url(re.compile(r"/ui/eips$"))

        step("the VPC's picture shows the VIP held by a")
        page.goto(f"{UI}/ui/vpcs/{vpc}")
        held = lambda nic: page.locator(f'#topology g.vip[data-id="{vip}"][data-holder="{nic}"]')
        expect(held(nic_a)).to_have_count(1, timeout=30_000)
        page.screenshot(path=f"{OUT}/vip-holder-a.png", full_page=True)
        at("holder-a")

        step("a's speaker stopped: the same page, not reloaded, shows b holding it")
        expect(held(nic_b)).to_have_count(1, timeout=45_000)
        page.screenshot(path=f"{OUT}/vip-holder-b.png", full_page=True)
        at("holder-b")

        step(f"agent {agent} killed: the status page shows it unhealthy")
        deadline = time.monotonic() + 60
        cell = page.locator(f'#agents tr[data-name="{agent}"] td.healthy')
        while True:
            page.goto(f"{UI}/ui/status")
            if cell.inner_text().strip() == "UNHEALTHY":
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{agent} still shown {cell.inner_text()!r} after 60 s")
            time.sleep(2)
        others = page.locator("#agents td.healthy").all_inner_texts()
        assert others.count("UNHEALTHY") == 1, others
        page.screenshot(path=f"{OUT}/status-killed-agent.png", full_page=True)

        step("the EIP's traffic is plotted")
        page.goto(f"{UI}/ui/eips/{eip}")
        plot = page.locator("#traffic-plot svg")
        expect(plot).to_be_visible()
        deadline = time.monotonic() + 30
        while int(plot.get_attribute("data-points") or "0") < 2:
            if time.monotonic() > deadline:
                raise AssertionError("fewer than 2 points on the traffic plot after 30 s")
            time.sleep(2)
            page.reload()
            plot = page.locator("#traffic-plot svg")
        expect(page.locator("#traffic-plot polyline").first).to_be_visible()
        page.locator("#traffic-plot").screenshot(path=f"{OUT}/eip-traffic.png")
        page.screenshot(path=f"{OUT}/eip-page.png", full_page=True)

        assert not outside, f"requests outside the console: {outside}"
        browser.close()
    step("all checks passed")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the first failed check, said plainly
        print(f"browser: FAILED: {e}", file=sys.stderr, flush=True)
        sys.exit(1)

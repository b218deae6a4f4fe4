"""The web console in a real browser (Debian's Chromium, headless, driven by
Playwright): run by console_browser.rs against a real `vpcip controller`.

Environment: UI (the console's base URL), TENANT and OTHER (two tenants'
tokens), NIC (vm1's NIC, already holding 10 VIPs), OUT (where screenshots
go). Exits non-zero on the first failed
check, saying which.
"""

import os
import re
import sys

from playwright.sync_api import expect, sync_playwright

UI = os.environ["UI"]
OUT = os.environ["OUT"]


def step(msg):
    print(f"browser: {msg}", flush=True)


def sign_in(page, token):
    page.goto(f"{UI}/ui/login")
    page.fill("#token", token)
    page.click("#sign-in")
    expect(page).to_have_url(re.compile(r"/ui/eips$"))


def main():
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu"],
        )
        tenant = browser.new_context()
        page = tenant.new_page()
        # Nothing is fetched from anywhere but the console itself.
        outside = []
        page.on(
            "request",
            lambda r: outside.append(r.url) if not r.url.startswith(UI) else None,
        )

        step("sign in as the tenant")
        sign_in(page, os.environ["TENANT"])
        cookie = [c for c in tenant.cookies() if c["name"] == "vpcip_session"][0]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie

        step("allocate an EIP and bind it to vm1 in one step")
        page.fill("#new-name", "web")
        page.fill("#new-bandwidth", "10")
        page.select_option("#new-target-kind", "server")
        page.fill("#new-target", "vm1")
        page.click("#allocate-button")
        expect(page.locator("#target")).to_contain_text("server")
        eip_url = page.url
        eip_ip = page.locator("h1").inner_text().split()[-1]
        step(f"EIP {eip_ip} at {eip_url}")

        step("it is in the list, and found by its address")
        page.goto(f"{UI}/ui/eips")
        expect(page.locator("#eips")).to_contain_text(eip_ip)
        page.fill("#search", eip_ip)
        page.press("#search", "Enter")
        expect(page.locator("main")).to_contain_text("1 EIP(s)")

        step("and in the VPC's topology")
        page.goto(eip_url)
        page.click("text=(topology)")
        expect(page.locator("#topology svg")).to_be_visible()
        expect(page.locator("#topology")).to_contain_text(eip_ip)
        page.screenshot(path=f"{OUT}/topology.png", full_page=True)

        step("a refusal is shown next to its form")
        page.goto(eip_url)
        page.fill("#bind-target", "no-such-server")
        page.click("#bind-button")
        expect(page.locator("#bind-error")).to_contain_text("no-such-server")

        step("the 11th VIP on vm1's NIC is refused, the rule shown next to the form")
        page.goto(f"{UI}/ui/vips")
        page.fill("#vip-name", "eleventh")
        page.fill("#vip-subnet", "sw1")
        page.click("#vip-create")
        expect(page.locator("h1")).to_contain_text("eleventh")
        page.fill("#bind-nic", os.environ["NIC"])
        page.click("#bind-button")
        expect(page.locator("#bind-error")).to_contain_text("already holds 10 VIPs (limit 10)")
        expect(page.locator("#bind-error")).to_contain_text("nic_vip_limit")
        expect(page.locator("#members")).not_to_contain_text(os.environ["NIC"])
        page.screenshot(path=f"{OUT}/vip-refused.png", full_page=True)

        step("change its bandwidth")
        page.goto(eip_url)
        page.fill("#update-bandwidth", "20")
        page.click("#update-button")
        expect(page.locator("#bandwidth")).to_have_text("20 Mbit/s")
        page.screenshot(path=f"{OUT}/eip.png", full_page=True)

        step("a form posted without its CSRF token is refused")
        r = page.request.post(f"{eip_url}/update", form={"bandwidth_mbps": "30"})
        assert r.status == 403, r.status
        page.goto(eip_url)
        expect(page.locator("#bandwidth")).to_have_text("20 Mbit/s")

        step("another tenant cannot open it")
        other = browser.new_context()
        other_page = other.new_page()
        sign_in(other_page, os.environ["OTHER"])
        r = other_page.goto(eip_url)
        assert r.status == 404, r.status
        expect(other_page.locator("#refusal")).to_contain_text("not found")
        expect(other_page.locator("body")).not_to_contain_text(eip_ip)

        step("unbind, then release")
        page.click("#unbind-button")
        expect(page.locator("#target")).to_have_text("unbound")
        page.click("#release-button")
        expect(page).to_have_url(re.compile(r"/ui/eips$"))
        expect(page.locator("#eips")).not_to_contain_text(eip_ip)

        step("sign out")
        page.click("text=Sign out")
        expect(page).to_have_url(re.compile(r"/ui/login$"))
        page.goto(f"{UI}/ui/eips")
        expect(page).to_have_url(re.compile(r"/ui/login$"))

        assert not outside, f"requests outside the console: {outside}"
        browser.close()
    step("all checks passed")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the first failed check, said plainly
        print(f"browser: FAILED: {e}", file=sys.stderr, flush=True)
        sys.exit(1)

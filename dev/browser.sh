#!/usr/bin/env bash
# The browser of the browser tests: Debian's Chromium, driven by the Python playwright package
# (pyproject's test extra) with executable_path=/usr/bin/chromium.  Playwright's own browser
# download is never used: this machine's network would refuse it.
#
#   dev/browser.sh install   apt-get install chromium if /usr/bin/chromium is missing
#   dev/browser.sh check     exit 0 if Chromium starts headless and renders a page
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG=browser.sh

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHROMIUM=/usr/bin/chromium

install() {
	if [[ ! -x $CHROMIUM ]]; then
		log "installing Debian's chromium"
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/dev/null
	fi
	[[ -x $CHROMIUM ]] || die "$CHROMIUM is missing after apt-get install chromium"
}

check() {
	"$REPO/.venv/bin/python" - <<'PY'
from playwright.sync_api import sync_playwright

with sync_playwright() as playwright:
    browser = playwright.chromium.launch(
        executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"]
    )
    page = browser.new_page()
    page.set_content("<h1>ok</h1>")
    assert page.inner_text("h1") == "ok"
    browser.close()
PY
}

case ${1:-} in
install) install ;;
check) check ;;
*) die "usage: dev/browser.sh install|check" ;;
esac

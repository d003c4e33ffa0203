#!/usr/bin/env bash
# Takes a headless-Chromium screenshot of the gateway's Swagger UI as a person sees it: the
# operations of every route the running services declare, read from the live OpenAPI document.
#
#   ops/swagger-ui-screenshot.sh [GATEWAY] [OUT_DIR]     defaults: 127.0.0.1:8080, .run/
#
# Needs a running gateway (ops/up.sh). Installs, when missing, Debian's chromium (apt-get) and
# the npm package playwright-core into .tools/npm, as ops/consul-ui-screenshot.sh does. The UI's
# files come from the gateway itself: the page renders without any network beyond it.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd -P)
gateway=${1:-${COURIER_GATEWAY__BIND:-127.0.0.1:8080}}
gateway=${gateway#*://}
out=${2:-$root/.run}
mkdir -p "$out"

if ! command -v chromium >/dev/null; then
    echo "screenshot: installing chromium (Debian package)"
    apt-get install -y chromium >/dev/null || { apt-get update >/dev/null && apt-get install -y chromium >/dev/null; }
fi
if [[ ! -d $root/.tools/npm/node_modules/playwright-core ]]; then
    echo "screenshot: installing playwright-core into .tools/npm"
    npm install --prefix "$root/.tools/npm" playwright-core@1 --no-audit --no-fund >/dev/null
fi

NODE_PATH="$root/.tools/npm/node_modules" node - "$gateway" "$out" <<'JS'
const { chromium } = require('playwright-core');
const [gateway, out] = process.argv.slice(2);
(async () => {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
  const outside = [];
  page.on('request', (r) => { if (!r.url().startsWith(`http://${gateway}/`)) outside.push(r.url()); });
  const url = `http://${gateway}/api/`;
  await page.goto(url);
  // An operation block per route: the UI has read the document and rendered it.
  await page.locator('.opblock').first().waitFor({ timeout: 15000 });
  const operations = await page.locator('.opblock').count();
  await page.waitForTimeout(300);
  const file = `${out}/swagger-ui.png`;
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot: ${file} (${url}, ${operations} operations)`);
  if (outside.length) {
    console.error(`screenshot: the page asked for something outside the gateway: ${outside.join(', ')}`);
    process.exit(1);
  }
  await browser.close();
})().catch((e) => { console.error(`screenshot: ${e.message}`); process.exit(1); });
JS

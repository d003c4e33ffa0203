#!/usr/bin/env bash
# Takes headless-Chromium screenshots of the Consul UI, as an operator would look at it: the
# services list and every instance of a service with its checks.
#
#   ops/consul-ui-screenshot.sh [SERVICE] [OUT_DIR]     defaults: users, .run/
#
# Needs a running agent at $CONSUL_HTTP_ADDR (default 127.0.0.1:8500), e.g. from ops/up.sh.
# Installs, when missing, Debian's chromium (apt-get) and the npm package playwright-core into
# .tools/npm (the UI long-polls the agent, so plain `chromium --screenshot` catches only its
# splash screen: a driver waits for the page to show the service).
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd -P)
service=${1:-users}
out=${2:-$root/.run}
addr=${CONSUL_HTTP_ADDR:-127.0.0.1:8500}
addr=${addr#*://}
mkdir -p "$out"

if ! command -v chromium >/dev/null; then
    echo "screenshot: installing chromium (Debian package)"
    apt-get install -y chromium >/dev/null || { apt-get update >/dev/null && apt-get install -y chromium >/dev/null; }
fi
if [[ ! -d $root/.tools/npm/node_modules/playwright-core ]]; then
    echo "screenshot: installing playwright-core into .tools/npm"
    npm install --prefix "$root/.tools/npm" playwright-core@1 --no-audit --no-fund >/dev/null
fi

NODE_PATH="$root/.tools/npm/node_modules" node - "$addr" "$service" "$out" <<'JS'
const { chromium } = require('playwright-core');
const [addr, service, out] = process.argv.slice(2);
(async () => {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const shots = [
    [`http://${addr}/ui/dc1/services`, `${out}/consul-ui-services.png`, service],
    [`http://${addr}/ui/dc1/services/${service}/instances`, `${out}/consul-ui-${service}.png`, 'passing'],
  ];
  for (const [url, file, text] of shots) {
    await page.goto(url);
    await page.getByText(text, { exact: false }).first().waitFor({ timeout: 15000 });
    await page.waitForTimeout(500);
    await page.screenshot({ path: file });
    console.log(`screenshot: ${file} (${url})`);
  }
  await browser.close();
})().catch((e) => { console.error(`screenshot: ${e.message}`); process.exit(1); });
JS

// chromium.mjs — headless Debian Chromium for the browser-based suites,
// launched one way everywhere (playwright-core, never a downloaded browser).
//
// The flags: no sandbox (the suites run as root inside scripts/netns.sh),
// no GPU, no QUIC, and none of Chromium's own background traffic, which this
// machine's closed network would refuse (SPEC: test traffic stays local).
import { chromium } from 'playwright-core';

export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic',
  '--no-first-run', '--disable-background-networking', '--disable-component-update',
  '--disable-sync'];

/* Launches the browser (CHROMIUM overrides /usr/bin/chromium) with extra flags. */
export function launchChromium(extraArgs = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [...CHROMIUM_ARGS, ...extraArgs],
  });
}

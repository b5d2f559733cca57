// Starts the real backend (`daftar-web`, the same Rust API the desktop window uses) on a fresh
// data directory and Debian's Chromium through playwright-core, for the browser tests.

import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir, homedir } from "node:os";
import { basename, join, resolve, dirname } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const ui = resolve(here, "../..");
export const repo = resolve(ui, "..");

const target = process.env.CARGO_TARGET_DIR ?? join(homedir(), ".cache/daftar/target");

/** Starts a server binary and waits for the line in which it says where it listens. */
async function startListening(binary, args, env = process.env) {
  const name = basename(binary);
  const child = spawn(binary, args, { stdio: ["ignore", "pipe", "inherit"], env });
  const line = await new Promise((ok, fail) => {
    child.once("error", fail);
    child.once("exit", (code) => fail(new Error(`${name} exited with ${code}`)));
    createInterface({ input: child.stdout }).once("line", ok);
  });
  return { url: String(line).replace(`${name} listening on `, "").trim(), stop: () => child.kill() };
}

export async function startBackend(dataDir = mkdtempSync(join(tmpdir(), "daftar-e2e-"))) {
  const binary = process.env.DAFTAR_WEB ?? join(target, "debug/daftar-web");
  const args = ["--data-dir", join(dataDir, "data"), "--ui", join(ui, "dist")];
  const web = await startListening(binary, args, { ...process.env, DAFTAR_PDF_DIR: join(dataDir, "pdf") });
  return { url: `${web.url}/`, dataDir, stop: web.stop };
}

/** The stub of ZATCA's API (crates/zatca-stub) on a free loopback port. */
export async function startZatcaStub() {
  return startListening(join(target, "debug/daftar-zatca-stub"), []);
}

export async function startBrowser() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  return browser;
}

let checks = 0;
export function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
  checks += 1;
}
/** How long a check waits for the page to settle: far beyond any machine's speed. */
const SETTLE_MS = 30_000;

/**
 * Checks `test(await read())`, reading again until it holds or SETTLE_MS pass: the page updates
 * asynchronously (debounced search, API round trips), and a fixed pause before asserting is
 * either too short on a slow machine or wasted on a fast one. The message names the last value.
 */
export async function checkSoon(read, test, message) {
  const deadline = Date.now() + SETTLE_MS;
  let value = await read();
  while (!test(value) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    value = await read();
  }
  check(test(value), `${message} (${JSON.stringify(value)})`);
}

export function checked() {
  return checks;
}

// Starts the real backend (`daftar-web`, the same Rust API the desktop window uses) on a fresh
// data directory and Debian's Chromium through playwright-core, for the browser tests.

import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir, homedir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const ui = resolve(here, "../..");
export const repo = resolve(ui, "..");

export async function startBackend(dataDir = mkdtempSync(join(tmpdir(), "daftar-e2e-"))) {
  const target = process.env.CARGO_TARGET_DIR ?? join(homedir(), ".cache/daftar/target");
  const binary = process.env.DAFTAR_WEB ?? join(target, "debug/daftar-web");
  const child = spawn(binary, ["--data-dir", join(dataDir, "data"), "--ui", join(ui, "dist")], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, DAFTAR_PDF_DIR: join(dataDir, "pdf") },
  });
  const line = await new Promise((ok, fail) => {
    child.once("error", fail);
    child.once("exit", (code) => fail(new Error(`daftar-web exited with ${code}`)));
    createInterface({ input: child.stdout }).once("line", ok);
  });
  const url = String(line).replace("daftar-web listening on ", "").trim();
  return { url: `${url}/`, dataDir, stop: () => child.kill() };
}

/** The stub of ZATCA's API (crates/zatca-stub) on a free loopback port. */
export async function startZatcaStub() {
  const target = process.env.CARGO_TARGET_DIR ?? join(homedir(), ".cache/daftar/target");
  const child = spawn(join(target, "debug/daftar-zatca-stub"), [], { stdio: ["ignore", "pipe", "inherit"] });
  const line = await new Promise((ok, fail) => {
    child.once("error", fail);
    child.once("exit", (code) => fail(new Error(`daftar-zatca-stub exited with ${code}`)));
    createInterface({ input: child.stdout }).once("line", ok);
  });
  return { url: String(line).replace("daftar-zatca-stub listening on ", "").trim(), stop: () => child.kill() };
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
export function checked() {
  return checks;
}

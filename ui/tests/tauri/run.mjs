// End to end against the real desktop binary: tauri-driver + WebKitWebDriver under Xvfb (the
// caller provides the display). Each app instance runs in its own D-Bus session with its own
// unlocked gnome-keyring and data directory, like two office machines; a real relay joins them.
//
//   node tests/tauri/run.mjs        (env: DAFTAR_APP, TAURI_DRIVER, DAFTAR_RELAY)

import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir, homedir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { createHmac } from "node:crypto";
import { Session, by } from "./webdriver.mjs";
import { repo } from "../e2e/harness.mjs";

/** The RFC 6238 code (SHA-1, 30 s, 6 digits) an authenticator app shows for a base-32 secret. */
function totp(secret, steps = 0) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of secret.replace(/=+$/, "")) bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 30_000) + steps));
  const mac = createHmac("sha1", key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, "0");
}

const target = process.env.CARGO_TARGET_DIR ?? join(homedir(), ".cache/daftar/target");
const app = process.env.DAFTAR_APP ?? join(target, "debug/daftar-app");
const driver = process.env.TAURI_DRIVER ?? join(homedir(), ".cache/daftar/tools/bin/tauri-driver");
const relayBinary = process.env.DAFTAR_RELAY ?? join(target, "debug/daftar-relay");
const shots = process.env.DAFTAR_SCREENSHOTS ?? join(repo, "docs/screenshots");
const children = [];
let checks = 0;
function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
  checks += 1;
}

/** One office machine: its own D-Bus session, keyring, data directory and tauri-driver. */
function machine(port) {
  const home = mkdtempSync(join(tmpdir(), "daftar-app-e2e-"));
  // As in scripts/test: D-Bus starts the keyring daemon on first use, unlocked (and again,
  // unlocked, if it ever leaves the bus); never a second one by hand racing that activation.
  mkdirSync(join(home, "xdg/dbus-1/services"), { recursive: true });
  writeFileSync(
    join(home, "xdg/dbus-1/services/org.freedesktop.secrets.service"),
    '[D-BUS Service]\nName=org.freedesktop.secrets\nExec=/bin/sh -c "printf pw | exec gnome-keyring-daemon --unlock --components=secrets --foreground"\n',
  );
  const script = `exec ${JSON.stringify(driver)} --port ${port} --native-port ${port + 1}`;
  const child = spawn("dbus-run-session", ["--", "sh", "-c", script], {
    env: {
      ...process.env,
      XDG_DATA_HOME: join(home, "xdg"),
      DAFTAR_DATA_DIR: join(home, "data"),
      WEBKIT_DISABLE_COMPOSITING_MODE: "1",
      WEBKIT_DISABLE_DMABUF_RENDERER: "1",
    },
    stdio: ["ignore", "ignore", "ignore"],
    detached: true,
  });
  children.push(child);
  return Session.start(port, app);
}

async function startRelay() {
  const dir = mkdtempSync(join(tmpdir(), "daftar-relay-e2e-"));
  const child = spawn(relayBinary, ["--listen", "127.0.0.1:0", "--database", join(dir, "relay.db")], {
    stdio: ["ignore", "pipe", "ignore"],
    env: { ...process.env, DAFTAR_RELAY_LOG: "warn" },
  });
  children.push(child);
  const line = await new Promise((ok) => createInterface({ input: child.stdout }).once("line", ok));
  return String(line).replace("daftar-relay listening on ", "").trim();
}

/** A screenshot of the whole X display: WebKitWebDriver's own screenshot hangs under Xvfb. */
async function shot(session, name) {
  await new Promise((r) => setTimeout(r, 400));
  await new Promise((ok, fail) =>
    spawn("import", ["-window", "root", join(shots, `${name}.png`)], { stdio: "ignore" }).once("exit", (code) =>
      code === 0 ? ok() : fail(new Error(`import exited with ${code}`)),
    ),
  );
}

const line = (n, part) => by.label(`${part} ${n}`);

try {
  const relay = await startRelay();
  const a = await machine(4444);

  // Onboarding.
  await a.click(by.button("Create a new workspace"));
  await a.type(by.id("seller-name"), "Acme Trading");
  await a.type(by.id("seller-name-ar"), "شركة أكمي للتجارة");
  await a.type(by.id("seller-vat"), "300000000000003");
  await a.type(by.id("seller-city"), "Riyadh");
  await a.click(by.button("Create workspace"));
  const key = await a.text(by.test("recovery-key"));
  check(/^[0-9A-Z]{6}(-[0-9A-Z]{6}){5}$/.test(key), `recovery key shown (${key})`);
  await a.click(`//label[contains(@class,'confirm')]/input`);
  await a.click(by.button("Continue"));
  await a.waitText(by.test("invoice-count"), (t) => t === "0 invoices");
  await shot(a, "app-window-en");

  // An invoice with three lines: the totals, then issue it.
  await a.click(by.button("New invoice"));
  await a.type(line(1, "Description"), "Flour sacks");
  await a.type(line(1, "Quantity"), "2");
  await a.type(line(1, "Unit price"), "50");
  await a.click(by.test("add-line"));
  await a.type(line(2, "Description"), "Salt");
  await a.type(line(2, "Quantity"), "1");
  await a.type(line(2, "Unit price"), "5.50");
  await a.click(by.test("add-line"));
  await a.type(line(3, "Description"), "Yeast");
  await a.type(line(3, "Quantity"), "3");
  await a.type(line(3, "Unit price"), "1.25");
  await a.waitText(by.test("total-gross"), (t) => t === "SAR 125.64");
  check((await a.text(by.test("total-vat"))) === "SAR 16.39", "VAT of the three lines");
  await a.click(by.button("Save"));
  await a.waitText(by.test("invoice-status"), (t) => t === "Draft");
  await a.click(by.test("issue"));
  await a.click(by.test("confirm-issue"));
  await a.waitText(by.test("invoice-title"), (t) => t.includes("A-000001"));
  check((await a.property(line(1, "Description"), "disabled")) === true, "issued invoices are read-only");
  await shot(a, "app-invoice-issued-en");

  // A draft: edit, delete, restore from the trash, restore an earlier version from history.
  await a.click(by.button("New invoice"));
  await a.type(line(1, "Description"), "Dates");
  await a.type(line(1, "Unit price"), "30");
  await a.click(by.button("Save"));
  await a.waitText(by.test("invoice-status"), (t) => t === "Draft");
  await a.type(line(1, "Quantity"), "4");
  await a.click(by.button("Save"));
  await a.waitText(by.test("total-gross"), (t) => t === "SAR 138.00");
  await a.click(by.button("Delete"));
  await a.waitText(by.test("invoice-status"), (t) => t === "In trash");
  await a.click(by.nav("Trash"));
  await a.click(`${by.test("trash-entry")}//button`);
  await a.waitText(by.text("The trash is empty."), () => true);
  await a.click(by.nav("Invoices"));
  await a.waitText(by.test("invoice-count"), (t) => t === "2 invoices");
  await a.click(`(${by.test("invoice-row")})[1]`);
  await a.click(by.button("History"));
  await a.find(`(${by.test("version")})[4]`);
  await a.run("window.confirm = () => true;");
  await a.click(`(${by.test("restore-version")})[1]`);
  await a.find(`(${by.test("version")})[5]`);
  await a.click(by.button("Back"));
  await a.waitText(by.test("total-gross"), (t) => t === "SAR 34.50");
  check(true, "version 1 of the draft restored");

  // Arabic, right to left.
  await a.click(by.test("toggle-language"));
  check((await a.run("return document.documentElement.dir;")) === "rtl", "Arabic is right to left");
  await a.click(by.nav("الفواتير"));
  await a.waitText(by.test("invoice-count"), (t) => t === "2 فاتورة");
  await shot(a, "app-window-ar");
  await a.click(by.test("toggle-language"));

  // A second machine joins through a relay and sees the first one's invoices; then an invoice
  // made on the first appears on the second by live sync.
  await a.click(by.nav("Sync"));
  await a.type(`//input[@type='url']`, relay);
  await a.click(by.button("Add relay"));
  await a.find(by.test("relay"));
  // The owner sets up two-factor sign-in: a QR code for the authenticator app, confirmed with
  // a code computed here from the secret shown beside it, as the app on a phone would.
  await a.click(by.nav("Settings"));
  await a.click(by.test("mfa-start"));
  await a.find(by.test("mfa-qr"));
  const secret = await a.text(by.test("mfa-secret"));
  await a.run("document.querySelector('[data-testid=mfa]').scrollIntoView();");
  await shot(a, "app-two-factor-en");
  await a.type(by.test("mfa-code"), totp(secret));
  await a.click(by.test("mfa-confirm"));
  await a.find(by.test("mfa-on"));
  check(true, "two-factor sign-in is set up with the QR code's secret and confirmed");
  await a.click(by.nav("Sync"));
  await a.click(by.button("Invite a device"));
  const code = await a.waitText(`//p[contains(@class,'code')]`, (t) => t.startsWith("daftar-invite-1."));

  const b = await machine(4454);
  await b.click(by.button("Join with an invite code"));
  await b.type(by.id("invite-code"), code);
  await b.click(by.button("Join"));
  // It waits, with nothing, until an owner approves it on the first machine.
  await b.find(by.test("awaiting-approval"));
  check(true, "the joined machine waits for approval");
  await shot(b, "app-awaiting-approval-en");
  await a.click(by.button("Sync now"));
  await a.find(`//li[@data-testid='device' and @data-status='pending']`);
  await a.type(by.test("approve-member"), "Sara");
  await a.click(by.test("approve"));
  await a.find(`//li[@data-testid='device' and @data-status='approved' and contains(., 'Sara')]`);
  await b.waitText(by.test("invoice-count"), (t) => t === "2 invoices");
  check(true, "once approved, the joined machine lists the first machine's invoices");

  await a.click(by.button("New invoice"));
  await a.type(line(1, "Description"), "Cardamom");
  await a.type(line(1, "Unit price"), "42");
  await a.click(by.button("Save"));
  await a.waitText(by.test("invoice-status"), (t) => t === "Draft");
  await b.waitText(by.test("invoice-count"), (t) => t === "3 invoices");
  check(true, "an invoice made on one machine appears on the other");
  await shot(b, "app-second-machine-en");

  // Backups in the desktop window: one made and verified, then a drill that restores it and
  // rebuilds the workspace from the relay with the recovery key.
  await a.click(by.nav("Settings"));
  await a.click(by.test("backup-now"));
  await a.waitText(by.test("backup-last"), (t) => t.includes("verified"));
  check(true, "a backup made from the desktop window is verified");
  await a.type(by.test("drill-key"), key);
  await a.click(by.test("drill-run"));
  const drill = await a.waitText(by.test("drill-last"), (t) => t.includes("From the relay:"), 120_000);
  check(drill.includes("Last drill passed") && /From the relay: \d+ documents recovered/.test(drill),
    `the drill recovers from the backup and from the relay (${drill})`);

  // The owner revokes the second machine from the window (its own window closed first, so the
  // screenshot of the display shows the first one): the workspace key moves to epoch 2.
  await b.end();
  await a.click(by.nav("Sync"));
  await a.find(`//li[@data-testid='device' and @data-status='approved' and contains(., 'Sara')]`);
  await a.click(by.test("revoke"));
  await a.click(by.test("revoke-confirm"));
  await a.find(`//li[@data-testid='device' and @data-status='revoked' and contains(., 'Sara')]`);
  await a.waitText(`//div[contains(@class,'notice')]`, (t) => t.includes("epoch 2"));
  await shot(a, "app-devices-en");
  check(true, "the second machine is revoked from the window and the key rotated");

  // A further relay: the owner gives a one-time code (the next step's, as this one may be
  // used) and their second factor is carried there, so the authenticator keeps one entry.
  const further = await startRelay();
  await a.type(`//input[@type='url']`, further);
  await a.type(by.test("relay-code"), totp(secret, 1));
  await shot(a, "app-further-relay-en");
  await a.click(by.button("Add relay"));
  await a.waitText(`//div[contains(@class,'notice')]`, (t) => t.includes("second factor now covers"));
  await a.find(`(${by.test("relay")})[2]`);
  check((await a.run("return document.querySelectorAll('[data-testid=relay]').length;")) === 2,
    "a further relay added from the window, the second factor carried to it");

  await a.end();
  console.log(`app e2e: ${checks} checks passed`);
} catch (error) {
  console.error(error);
  process.exitCode = 1;
} finally {
  for (const child of children) {
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {
      child.kill();
    }
  }
}

// The browser tests: the main flows in English and Arabic against the real backend, with a
// screenshot of each main screen in both languages (docs/screenshots/). Prints a summary line
// and exits non-zero on the first failure.

import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { startBackend, startBrowser, startZatcaStub, check, checkSoon, checked, repo } from "./harness.mjs";

const shots = process.env.DAFTAR_SCREENSHOTS ?? join(repo, "docs/screenshots");
const backend = await startBackend();
const browser = await startBrowser();
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
page.on("pageerror", (error) => {
  console.error(`page error: ${error.message}`);
  process.exitCode = 1;
});

async function shot(name) {
  // Only for the picture (transitions, fonts); every check before it waits for what it reads.
  await page.waitForTimeout(250);
  await page.screenshot({ path: join(shots, `${name}.png`) });
}

async function text(selector) {
  return (await page.locator(selector).first().textContent())?.trim() ?? "";
}

try {
  await page.goto(backend.url);
  // Onboarding: validation messages beside the fields, then the recovery key gate.
  await page.getByRole("button", { name: "Create a new workspace" }).click();
  await shot("onboarding-en");
  await page.getByLabel("VAT number").fill("12");
  await page.getByRole("button", { name: "Create workspace" }).click();
  await page.locator("#seller-vat-problem").waitFor();
  check((await text("#seller-name-problem")).includes("must not be empty"), "an empty name is named beside its field");
  await page.getByLabel("Legal name (English)").fill("Acme Trading");
  await page.getByLabel("Legal name (Arabic)").fill("شركة أكمي للتجارة");
  await page.getByLabel("VAT number").fill("300000000000003");
  await page.getByLabel("City").fill("Riyadh");
  await page.getByLabel("Your name").fill("Huda");
  await page.getByRole("button", { name: "Create workspace" }).click();
  await page.getByTestId("recovery-key").waitFor();
  const key = await text("[data-testid=recovery-key]");
  check(/^[0-9A-Z]{6}(-[0-9A-Z]{6}){5}$/.test(key), `the recovery key is shown (${key})`);
  await shot("recovery-key-en");
  const go = page.getByRole("button", { name: "Continue" });
  check(await go.isDisabled(), "continuing needs the confirmation");
  await page.getByLabel("I have written down the recovery key").check();
  await go.click();
  await page.getByRole("heading", { name: "Invoices" }).waitFor();
  check((await text("[data-testid=invoice-count]")) === "0 invoices", "an empty list");

  // A customer, then an invoice with three lines and live totals.
  await page.getByRole("navigation").getByRole("button", { name: "Customers" }).click();
  await page.getByRole("button", { name: "Add customer" }).click();
  await page.getByLabel("Name", { exact: true }).fill("Nour Bakery");
  await page.getByLabel("VAT number").fill("311111111111113");
  await page.getByLabel("City").fill("Jeddah");
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByTestId("customer-row").waitFor();
  await shot("customers-en");

  await page.keyboard.press("Control+n");
  await page.getByRole("heading", { name: "New invoice" }).waitFor();
  await page.getByLabel("Customer").selectOption({ label: "Nour Bakery" });
  const fillLine = async (n, description, quantity, price) => {
    await page.getByLabel(`Description ${n}`).fill(description);
    await page.getByLabel(`Quantity ${n}`).fill(quantity);
    await page.getByLabel(`Unit price ${n}`).fill(price);
  };
  await fillLine(1, "Flour sacks", "2", "50");
  await page.getByTestId("add-line").click();
  await fillLine(2, "Salt", "1", "5.555");
  await page.getByText("Amount").first().waitFor({ timeout: 3000 }).catch(() => {});
  await checkSoon(() => page.locator("td .problem").count(), (n) => n >= 1, "a bad amount is flagged beside its input");
  await page.getByLabel("Unit price 2").fill("5.50");
  await page.getByTestId("add-line").click();
  await fillLine(3, "Yeast", "3", "1.25");
  await checkSoon(() => text("[data-testid=total-gross]"), (t) => t === "SAR 125.64", "live totals");
  check((await text("[data-testid=total-vat]")) === "SAR 16.39", "VAT on the whole category, rounded once");
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByTestId("invoice-status").waitFor();
  check((await text("[data-testid=invoice-status]")) === "Draft", "saved as a draft");
  await shot("invoice-editor-en");

  // Issue with confirmation: read-only, numbered.
  await page.getByTestId("issue").click();
  await page.getByTestId("confirm-issue").click();
  await page.getByRole("heading", { name: "Invoice A-000001" }).waitFor();
  check(await page.getByLabel("Description 1").isDisabled(), "an issued invoice is read-only");
  check(await page.getByRole("button", { name: "Create credit note" }).isVisible(), "and offers a credit note");
  check((await text("[data-testid=einvoice]")).includes("ZATCA e-invoice no. 1"), "stamped as ZATCA e-invoice 1");
  await page.getByTestId("save-pdf").click();
  await page.getByText(/PDF saved to .*A-000001\.pdf/).waitFor();
  const pdfFile = join(backend.dataDir, "pdf", "A-000001.pdf");
  const pdfText = execFileSync("pdftotext", [pdfFile, "-"], { encoding: "utf8" });
  check(pdfText.includes("Tax Invoice") || pdfText.includes("Simplified Tax Invoice"), "Save PDF writes the invoice's PDF");
  await page.getByTestId("print").click();
  await page.getByText(/(Opened|PDF saved to) .*A-000001\.pdf.*print/).waitFor();
  check(true, "Print saves the PDF and hands it to the desktop's viewer");
  await shot("invoice-issued-en");

  // A second draft: edit it, delete it, restore it from the trash, restore an earlier version.
  await page.keyboard.press("Control+n");
  await page.getByRole("heading", { name: "New invoice" }).waitFor();
  await fillLine(1, "Dates", "1", "30");
  await page.keyboard.press("Control+s");
  await page.getByTestId("invoice-status").waitFor();
  await page.getByLabel("Quantity 1").fill("4");
  await page.keyboard.press("Control+s");
  await page.getByText("Saved.").waitFor();
  check((await text("[data-testid=total-gross]")) === "SAR 138.00", "the edit is saved");
  await page.getByRole("button", { name: "Delete" }).click();
  await page.getByText("This invoice is in the trash").waitFor();
  await page.getByRole("navigation").getByRole("button", { name: "Trash" }).click();
  await page.getByTestId("trash-entry").waitFor();
  await shot("trash-en");
  await page.getByTestId("trash-entry").getByRole("button", { name: "Restore" }).click();
  await page.getByText("The trash is empty.").waitFor();
  await page.getByRole("navigation").getByRole("button", { name: "Invoices" }).click();
  await page.getByTestId("invoice-row").nth(1).waitFor();
  check((await text("[data-testid=invoice-count]")) === "2 invoices", "both invoices are listed");
  await shot("invoices-en");
  await page.getByTestId("invoice-row").first().click();
  await page.getByRole("button", { name: "History" }).click();
  await page.getByTestId("version").nth(3).waitFor();
  check((await page.getByTestId("version").count()) === 4, "create, edit, delete, restore");
  await page.getByTestId("diff").waitFor();
  await shot("history-en");
  page.once("dialog", (dialog) => dialog.accept());
  await page.getByTestId("restore-version").first().click();
  await page.getByTestId("version").nth(4).waitFor();
  await page.getByRole("button", { name: "Back" }).click();
  await page.getByTestId("total-gross").waitFor();
  await checkSoon(() => text("[data-testid=total-gross]"), (t) => t === "SAR 34.50", "version 1 restored as a new version");

  // Search as you type.
  await page.getByRole("navigation").getByRole("button", { name: "Invoices" }).click();
  await page.keyboard.press("Control+f");
  await page.keyboard.type("yeast");
  await checkSoon(() => text("[data-testid=invoice-count]"), (t) => t === "1 invoices", "search finds the invoice by a line");
  await page.locator("#invoice-search").fill("");
  await checkSoon(() => text("[data-testid=invoice-count]"), (t) => t === "2 invoices", "clearing the search lists both again");

  // Sorting by a column, then reversing it.
  await page.getByTestId("sort-total").click();
  await checkSoon(() => text("[data-testid=invoice-row] .num"), (t) => t === "SAR 125.64", "largest total first");
  await page.getByTestId("sort-total").click();
  await checkSoon(() => text("[data-testid=invoice-row] .num"), (t) => t === "SAR 34.50", "then smallest first");
  check((await page.getByRole("columnheader", { name: /Total/ }).getAttribute("aria-sort")) === "ascending", "aria-sort says so");
  await page.getByTestId("sort-date").click();

  // The sync screen and settings, then everything again in Arabic.
  await page.getByRole("navigation").getByRole("button", { name: "Sync" }).click();
  await page.getByText("No relay yet").waitFor();
  await shot("sync-en");
  await page.getByRole("navigation").getByRole("button", { name: "Settings" }).click();
  await page.getByTestId("zatca-status").waitFor();
  check((await text("[data-testid=role]")) === "This device's role: owner.", "the workspace's creator is its owner");
  const zatca = await text("[data-testid=zatca-status]");
  check(zatca.includes("not onboarded") && zatca.includes("not reportable 1"), `the ZATCA state is shown (${zatca})`);
  await shot("settings-en");
  // Onboarding from the app: the seller profile first (ZATCA needs CR and national address).
  const stub = await startZatcaStub();
  try {
    await page.getByTestId("zatca-otp").fill("123456");
    await page.getByTestId("zatca-api-url").fill(stub.url);
    await page.getByTestId("zatca-onboard").click();
    await page.getByText(/BR-KSA-08/).first().waitFor();
    check(true, "onboarding names the missing seller details by ZATCA rule");
    await page.getByLabel("Commercial registration").fill("1010010000");
    await page.getByLabel("Street").fill("King Fahd Road");
    await page.getByLabel("Building number").fill("1234");
    await page.getByLabel("District").fill("Al Olaya");
    await page.getByLabel("Postal code").fill("12345");
    await page.getByLabel("City", { exact: true }).fill("Riyadh");
    await page.getByRole("button", { name: "Save", exact: true }).click();
    await page.getByTestId("zatca-onboard").click();
    await page.getByText("Onboarded: invoices are cleared or reported").waitFor();
    check((await text("[data-testid=zatca-stage]")).startsWith("Onboarded"), "onboarded through the API stub");
    await shot("settings-zatca-onboarded-en");
  } finally {
    stub.stop();
  }
  // Backups: a warning until the first one, then a verified backup, a full check, a drill.
  await page.getByTestId("backup-status").waitFor();
  check((await text("[data-testid=backup-warning]")).includes("No verified backup"), "no backup yet is a warning");
  await page.getByTestId("backup-now").click();
  await page.getByTestId("backup-list").waitFor();
  check((await text("[data-testid=backup-last]")).includes("verified"), "the backup made from the app is verified");
  check((await page.getByTestId("backup-warning").count()) === 0, "the warning is gone once a verified backup exists");
  await page.getByTestId("backup-verify").click();
  await page.getByText("Every backup was read in full and checked.").waitFor();
  await page.getByTestId("drill-key").fill(key);
  await page.getByTestId("drill-run").click();
  await page.getByTestId("drill-last").waitFor();
  const drill = await text("[data-testid=drill-last]");
  check(drill.includes("Last drill passed") && drill.includes("From the newest backup: 5 documents recovered") && drill.includes("From the relay: skipped"),
    `the drill restores the backup and says why the relay path was skipped (${drill})`);
  await page.getByTestId("backup-status").scrollIntoViewIfNeeded();
  await shot("settings-backups-en");

  // The audit log: every change with its fields, a verified chain, an export.
  await page.getByRole("navigation").getByRole("button", { name: "Audit log" }).click();
  await page.getByTestId("audit-list").waitFor();
  const log = await text("[data-testid=audit-list]");
  check(log.includes("issue A-000001") && log.includes("backup"), "the audit log lists the issue and the backup");
  await page.getByTestId("audit-member").fill("nobody");
  await page.getByRole("button", { name: "Show" }).click();
  await page.getByText("Nothing in the log for these filters.").waitFor();
  check((await page.getByTestId("audit-entry").count()) === 0, "a member with no entries shows none");
  // The workspace's creator is the member named at onboarding.
  await page.getByTestId("audit-member").fill("Huda");
  await page.getByTestId("audit-invoice").fill("A-000001");
  await page.getByRole("button", { name: "Show" }).click();
  await checkSoon(() => page.getByTestId("audit-entry").count(), (rows) => rows >= 2, "--invoice filters the log to the invoice's entries");
  check(!(await text("[data-testid=audit-list]")).includes("backup"), "and leaves out the rest (backups)");
  await page.getByTestId("audit-verify").click();
  await page.getByTestId("audit-check").waitFor();
  check((await text("[data-testid=audit-check]")).startsWith("The log verifies"), "the chain verifies from the app");
  await page.getByTestId("audit-export").click();
  await page.getByText(/Saved .*audit-.*\.csv/).waitFor();
  await shot("audit-en");
  await page.getByRole("navigation").getByRole("button", { name: "Items" }).click();
  await page.getByRole("button", { name: "Add item" }).click();
  await page.getByLabel("Name", { exact: true }).fill("Cardamom 1kg");
  await page.getByLabel("Unit price").fill("42");
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByTestId("item-row").waitFor();
  await shot("items-en");

  await page.getByTestId("toggle-language").click();
  check((await page.locator("html").getAttribute("dir")) === "rtl", "Arabic lays out right to left");
  await page.getByRole("navigation").getByRole("button", { name: "الفواتير" }).click();
  await page.getByTestId("invoice-row").nth(1).waitFor();
  check((await text("[data-testid=invoice-count]")) === "2 فاتورة", "the list speaks Arabic");
  await shot("invoices-ar");
  await page.getByRole("navigation").getByRole("button", { name: "الإعدادات" }).click();
  await page.getByLabel("عربية هندية (١٢٣)").check();
  await shot("settings-ar");
  await page.getByTestId("backup-status").scrollIntoViewIfNeeded();
  check((await text("[data-testid=backup-status] h2")) === "النسخ الاحتياطية", "the backup card speaks Arabic");
  await shot("settings-backups-ar");
  await page.getByRole("navigation").getByRole("button", { name: "الفواتير" }).click();
  await page.getByTestId("invoice-row").nth(1).waitFor();
  check((await text("[data-testid=invoice-count]")) === "٢ فاتورة", "Arabic-Indic digits when chosen");
  await page.getByTestId("invoice-row").nth(1).click();
  await page.getByTestId("total-gross").waitFor();
  await checkSoon(() => text("[data-testid=total-gross]"), (t) => t === "١٢٥٫٦٤ ر.س", "amounts in Arabic");
  await shot("invoice-issued-ar");
  await page.getByRole("button", { name: "السجل" }).click();
  await page.getByTestId("version").first().waitFor();
  await shot("history-ar");
  await page.getByRole("navigation").getByRole("button", { name: "المحذوفات" }).click();
  await shot("trash-ar");
  await page.getByRole("navigation").getByRole("button", { name: "العملاء" }).click();
  await page.getByTestId("customer-row").waitFor();
  await shot("customers-ar");
  await page.getByRole("navigation").getByRole("button", { name: "الأصناف" }).click();
  await page.getByTestId("item-row").waitFor();
  await shot("items-ar");
  await page.getByRole("navigation").getByRole("button", { name: "المزامنة" }).click();
  await shot("sync-ar");
  await page.getByRole("button", { name: "فاتورة جديدة" }).click();
  await page.getByLabel("الوصف 1").fill("هيل");
  await page.getByLabel("الكمية 1").fill("2");
  await page.getByLabel("سعر الوحدة 1").fill("10");
  await checkSoon(() => text("[data-testid=total-gross]"), (t) => t === "٢٣٫٠٠ ر.س", "live totals in Arabic");
  await shot("invoice-editor-ar");

  // A credit note against the issued invoice: a new draft that refers to it.
  await page.getByTestId("toggle-language").click();
  await page.getByRole("navigation").getByRole("button", { name: "Invoices" }).click();
  await page.getByTestId("sort-number").click();
  await checkSoon(() => text("[data-testid=invoice-row] .number"), (t) => t === "A-000001", "numbered invoices first when sorted by number");
  await page.getByTestId("invoice-row").first().click();
  await page.getByTestId("credit-note").click();
  await page.getByTestId("credit-reason").fill("Two sacks returned damaged");
  await page.getByTestId("confirm-credit").click();
  await page.getByText("Draft invoice").waitFor();
  check((await page.locator("#kind").inputValue()) === "credit_note", "the new draft is a credit note");
  check((await page.getByLabel("Description 1").inputValue()) === "Flour sacks", "with the original's lines");
  console.log(`e2e: ${checked()} checks passed, screenshots in ${shots}`);
} catch (error) {
  await page.screenshot({ path: join(shots, "failure.png") }).catch(() => {});
  console.error(error);
  process.exitCode = 1;
} finally {
  await browser.close();
  backend.stop();
}

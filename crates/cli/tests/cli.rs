//! The `daftar` command line as scripts and other tools use it: its `--json` contract, its
//! errors, and what bad input must not do.

mod common;

use common::{Daftar, files};
use serde_json::Value;

#[test]
fn init_prints_the_workspace_device_and_series() {
    let d = Daftar::new();
    let out = d.json(&["init", "--seller-name", "Acme", "--vat-number", "300000000000003", "--series", "hq"]);
    for key in ["workspace_id", "device_id"] {
        assert!(out[key].as_str().is_some_and(|s| s.len() == 36), "{key} is a UUID: {out}");
    }
    assert_eq!(out["series"], "HQ");
    let recovery = out["recovery_key"].as_str().expect("init prints the recovery key once");
    let groups: Vec<&str> = recovery.split('-').collect();
    assert_eq!(groups.len(), 6, "{recovery}");
    assert!(groups.iter().all(|g| g.len() == 6 && g.chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())));
    for file in files(&d.data_dir()) {
        let bytes = std::fs::read(&file).unwrap();
        for form in [recovery.to_owned(), recovery.replace('-', "")] {
            assert!(
                !bytes.windows(form.len()).any(|w| w == form.as_bytes()),
                "the recovery key is in {}",
                file.display()
            );
        }
    }
    let again = d.fails(&["init", "--seller-name", "Acme", "--vat-number", "300000000000003"]);
    assert_eq!(again["code"], "already_initialised", "a second init must not overwrite the workspace");
}

#[test]
fn invoice_json_contract_from_draft_to_issued() {
    let d = Daftar::init();
    let customer = d.customer("Nour Bakery", Some("311111111111113"));
    let inv = d.json(&["invoice", "create", "--customer", &customer, "--line", "Flour sacks|2|50|S"]);
    assert_eq!(inv["number"], Value::Null, "drafts have no number");
    assert_eq!(inv["status"], "draft");
    assert_eq!(inv["deleted"], false);
    assert_eq!(inv["customer"]["name"], "Nour Bakery");
    assert_eq!(inv["lines"].as_array().map(Vec::len), Some(1));
    assert_eq!(inv["totals"]["net"], "100.00");
    assert_eq!(inv["totals"]["vat"], "15.00");
    assert_eq!(inv["totals"]["gross"], "115.00");
    assert_eq!(inv["totals"]["currency"], "SAR");
    let id = inv["id"].as_str().unwrap().to_owned();

    d.json(&["invoice", "edit", &id, "--add-line", "Delivery|1|20", "--set", "notes=leave at the back door"]);
    let issued = d.json(&["invoice", "issue", &id]);
    assert_eq!(issued["number"], "A-000001");
    assert_eq!(issued["status"], "issued");
    assert_eq!(issued["totals"]["gross"], "138.00");

    let refused = d.fails(&["invoice", "edit", &id, "--set", "notes=changed"]);
    assert_eq!(refused["code"], "conflict");
    assert!(refused["message"].as_str().unwrap().contains("is issued and cannot be edited"), "{refused}");
    assert_eq!(d.fails(&["invoice", "issue", &id])["code"], "conflict", "issuing twice is refused");
    assert_eq!(d.fails(&["invoice", "delete", &id])["code"], "conflict", "issued invoices are permanent");

    let history = d.json(&["invoice", "history", &id]);
    let versions = history.as_array().unwrap();
    assert_eq!(versions.len(), 3, "create, edit, issue: {history}");
    for (i, v) in versions.iter().enumerate() {
        assert_eq!(v["version"], i + 1, "oldest first");
        assert!(v["time"].is_string() && v["device"].is_string(), "{v}");
    }
    let old = d.json(&["invoice", "show", &id, "--version", "1"]);
    assert_eq!(old["totals"]["gross"], "115.00", "version 1 as it was");
    let diff = d.json(&["invoice", "diff", &id, "1", "2"]);
    let paths: Vec<&str> = diff.as_array().unwrap().iter().map(|c| c["path"].as_str().unwrap()).collect();
    assert!(paths.contains(&"notes") && paths.contains(&"lines[2].description"), "{paths:?}");

    let by_number = d.json(&["invoice", "show", "A-000001"]);
    assert_eq!(by_number["id"], id.as_str(), "invoices can be named by number");
    let listed = d.json(&["invoice", "list", "--query", "flour", "--status", "issued"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["gross"], "138.00");
    assert_eq!(d.json(&["invoice", "list", "--status", "draft"]).as_array().unwrap().len(), 0);

    let second = d.json(&["invoice", "create", "--customer", &customer, "--line", "Yeast|1|9.99"]);
    let n2 = d.json(&["invoice", "issue", second["id"].as_str().unwrap()]);
    assert_eq!(n2["number"], "A-000002", "numbers are consecutive within the series");

    let credit = d.json(&[
        "invoice",
        "create",
        "--kind",
        "credit_note",
        "--original",
        "A-000001",
        "--reason",
        "damaged sack",
        "--line",
        "Flour sack returned|1|50",
    ]);
    assert_eq!(credit["kind"], "credit_note");
    assert_eq!(credit["original"]["number"], "A-000001");
    assert_eq!(credit["customer"]["name"], "Nour Bakery", "a note inherits the original's customer");
}

#[test]
fn trash_restore_revert_and_purge() {
    let d = Daftar::init();
    let customer = d.customer("Al Noor", None);
    let inv = d.json(&["invoice", "create", "--customer", &customer, "--line", "Tea|3|4.5"]);
    assert_eq!(inv["kind"], "simplified", "customers without a VAT number get simplified invoices");
    let id = inv["id"].as_str().unwrap();
    d.json(&["invoice", "edit", id, "--set-line", "1|Green tea|5|4.5"]);
    let deleted = d.json(&["invoice", "delete", id]);
    assert_eq!(deleted["deleted"], true);
    assert!(deleted["deleted_at"].is_string());
    assert!(d.json(&["invoice", "list"]).as_array().unwrap().is_empty(), "deleted invoices leave the list");
    assert_eq!(d.json(&["invoice", "list", "--deleted"]).as_array().unwrap().len(), 1);
    assert_eq!(d.json(&["trash"]).as_array().unwrap().len(), 1);
    let restored = d.json(&["invoice", "restore", id]);
    assert_eq!(restored["deleted"], false);
    let reverted = d.json(&["invoice", "revert", id, "--to", "1"]);
    assert_eq!(reverted["lines"][0]["description"], "Tea");
    assert_eq!(d.json(&["invoice", "history", id]).as_array().unwrap().len(), 5, "the revert is a new version");

    d.json(&["customer", "delete", &customer]);
    assert_eq!(d.json(&["customer", "list", "--deleted"]).as_array().unwrap().len(), 1);
    d.json(&["customer", "restore", &customer]);

    assert_eq!(
        d.fails(&["invoice", "purge", id, "--yes"])["code"],
        "conflict",
        "only drafts in the trash can be purged"
    );
    d.json(&["invoice", "delete", id]);
    d.json(&["invoice", "purge", id, "--yes"]);
    assert_eq!(d.fails(&["invoice", "show", id])["code"], "not_found");
    assert_eq!(d.json(&["store", "verify"])["ok"], true);
}

#[test]
fn bad_input_gets_a_precise_error_and_changes_nothing() {
    let d = Daftar::init();
    let customer = d.customer("Nour", Some("311111111111113"));
    let before = d.json(&["store", "verify"]);

    let vat = d.fails(&["customer", "add", "--name", "X", "--vat-number", "31234"]);
    assert_eq!(vat["message"], "customer VAT number must be 15 digits starting and ending with 3 (got 31234)");
    let qty = d.fails(&[
        "invoice",
        "create",
        "--customer",
        &customer,
        "--line",
        "a|1|1",
        "--line",
        "b|1|1",
        "--line",
        "c|-2|10|S",
    ]);
    assert_eq!(qty["message"], "line 3: quantity must be greater than 0 (got -2)");
    let amount = d.fails(&["invoice", "create", "--customer", &customer, "--line", "a|1|12.345"]);
    assert!(
        amount["message"].as_str().unwrap().contains("amount allows at most 2 decimal places (got \"12.345\")"),
        "{amount}"
    );
    let unknown = d.fails(&["invoice", "show", "01234567-89ab-7def-8123-456789abcdef"]);
    assert_eq!(unknown["code"], "not_found");
    assert_eq!(unknown["message"], "no invoice with id 01234567-89ab-7def-8123-456789abcdef");
    let wrong_kind = d.fails(&["invoice", "show", &customer]);
    assert_eq!(wrong_kind["code"], "not_found", "a customer id is not an invoice id");
    let category = d.fails(&["invoice", "create", "--customer", &customer, "--line", "a|1|1|X"]);
    assert!(category["message"].as_str().unwrap().contains("VAT category must be one of S"), "{category}");
    let currency = d.fails(&["invoice", "create", "--customer", &customer, "--line", "a|1|1", "--currency", "USD"]);
    assert!(currency["message"].as_str().unwrap().contains("needs an exchange rate to SAR"), "{currency}");

    let after = d.json(&["store", "verify"]);
    assert_eq!(before, after, "refused commands leave the store exactly as it was");
}

#[test]
fn csv_import_is_all_or_nothing_and_names_row_and_column() {
    let d = Daftar::init();
    let bad = d.dir.path().join("bad.csv");
    std::fs::write(&bad, "name,vat_number,city\nAlpha,300000000000003,Riyadh\nBeta,31234,Jeddah\nGamma,,Dammam\n")
        .unwrap();
    let err = d.fails(&["import", "csv", "--customers", bad.to_str().unwrap()]);
    let message = err["message"].as_str().unwrap();
    assert!(message.contains("line 3, column vat_number: customer VAT number must be 15 digits"), "{message}");
    assert!(message.contains("nothing was imported"), "{message}");
    assert!(d.json(&["customer", "list"]).as_array().unwrap().is_empty(), "no row of a bad file is imported");

    let ragged = d.dir.path().join("ragged.csv");
    std::fs::write(&ragged, "name,city\nAlpha,Riyadh\nBeta\n").unwrap();
    let err = d.fails(&["import", "csv", "--customers", ragged.to_str().unwrap()]);
    assert!(err["message"].as_str().unwrap().contains("line 3: expected 2 columns, found 1"), "{err}");

    let good = d.dir.path().join("good.csv");
    std::fs::write(&good, "name,vat_number,city\nAlpha,300000000000003,Riyadh\nBeta,,Jeddah\n").unwrap();
    assert_eq!(d.json(&["import", "csv", "--customers", good.to_str().unwrap()])["imported"], 2);
    let items = d.dir.path().join("items.csv");
    std::fs::write(&items, "name,price,vat_category,exemption_code\nBread,2.50,S,\nExport crate,100,Z,VATEX-SA-32\n")
        .unwrap();
    assert_eq!(d.json(&["import", "csv", "--items", items.to_str().unwrap()])["imported"], 2);
    let bad_items = d.dir.path().join("bad-items.csv");
    std::fs::write(&bad_items, "name,price\nCake,abc\n").unwrap();
    let err = d.fails(&["import", "csv", "--items", bad_items.to_str().unwrap()]);
    assert!(
        err["message"].as_str().unwrap().contains("line 2, column price: amount must be a decimal number"),
        "{err}"
    );
    assert_eq!(d.json(&["item", "list"]).as_array().unwrap().len(), 2);
    assert_eq!(d.json(&["store", "verify"])["ok"], true);
}

#[test]
fn nothing_readable_on_disk() {
    let d = Daftar::init();
    let customer = d.json(&["customer", "add", "--name", "Zumurrud Perfumes", "--vat-number", "312345678900003"]);
    d.json(&["invoice", "create", "--customer", customer["id"].as_str().unwrap(), "--line", "Oud oil|3|1234.56"]);
    for file in files(&d.data_dir()) {
        let bytes = std::fs::read(&file).unwrap();
        for secret in ["Zumurrud", "312345678900003", "Oud oil", "1234.56", "Acme Trading"] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret:?} is readable in {}",
                file.display()
            );
        }
    }
}

#[test]
fn missing_keyring_wrong_key_and_damage_are_named() {
    let d = Daftar::init();
    let no_keyring = d
        .command()
        .args(["--json", "invoice", "list"])
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .output()
        .unwrap();
    assert!(!no_keyring.status.success());
    let err: Value = serde_json::from_slice(&no_keyring.stderr).unwrap();
    assert_eq!(err["error"]["code"], "keyring_unavailable", "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("--key-file"), "the message names the way out");

    let profile = d.data_dir().join("daftar.json");
    let original = std::fs::read_to_string(&profile).unwrap();
    let json: Value = serde_json::from_str(&original).unwrap();
    let namespace = json["key"]["namespace"].as_str().unwrap();
    std::fs::write(&profile, original.replace(namespace, "00000000-0000-4000-8000-000000000000")).unwrap();
    assert_eq!(d.fails(&["invoice", "list"])["code"], "key_missing");
    std::fs::write(&profile, &original).unwrap();

    let db = d.data_dir().join("daftar.db");
    let mut bytes = std::fs::read(&db).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 32] {
        *b ^= 0x5A;
    }
    std::fs::write(&db, &bytes).unwrap();
    let damaged = d.run(&["store", "verify"]);
    assert!(!damaged.status.success(), "a damaged page must be reported");
    let stderr = String::from_utf8_lossy(&damaged.stderr);
    let stdout = String::from_utf8_lossy(&damaged.stdout);
    assert!(stdout.contains("PROBLEM") || stderr.contains("damaged"), "{stdout}\n{stderr}");
}

#[test]
fn passphrase_key_file_is_opt_in_and_checked() {
    let d = Daftar::new();
    let init = d
        .command()
        .args(["--json", "init", "--seller-name", "Acme", "--vat-number", "300000000000003", "--key-file"])
        .env("DAFTAR_PASSPHRASE", "a long passphrase")
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let wrong =
        d.command().args(["--json", "invoice", "list"]).env("DAFTAR_PASSPHRASE", "not it at all").output().unwrap();
    let err: Value = serde_json::from_slice(&wrong.stderr).unwrap();
    assert_eq!(err["error"]["code"], "wrong_key", "{err}");
    let right =
        d.command().args(["--json", "invoice", "list"]).env("DAFTAR_PASSPHRASE", "a long passphrase").output().unwrap();
    assert!(right.status.success());
}

#[test]
fn two_processes_writing_at_once_both_succeed() {
    let d = Daftar::init();
    let customer = d.customer("Shared", None);
    let spawn = || {
        d.command()
            .args(["debug", "write-loop", "--customer", &customer, "--count", "25"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "the second writer waits rather than failing");
    }
    assert_eq!(d.json(&["invoice", "list"]).as_array().unwrap().len(), 50);
    let verify = d.json(&["store", "verify"]);
    assert_eq!(verify["ok"], true, "{verify}");
    assert_eq!(verify["issued"], 18, "9 issued by each writer, numbered without gaps or repeats");
}

#[test]
fn export_and_maintenance_commands() {
    let d = Daftar::init();
    let customer = d.customer("Export Co", None);
    d.json(&["invoice", "create", "--customer", &customer, "--line", "Widget|2|10"]);
    d.json(&["item", "add", "--name", "Widget", "--price", "10", "--vat-category", "S"]);
    let out = d.dir.path().join("export");
    let report = d.json(&["export", "json", out.to_str().unwrap()]);
    assert_eq!(
        (report["invoices"].as_u64(), report["customers"].as_u64(), report["items"].as_u64()),
        (Some(1), Some(1), Some(1))
    );
    assert!(out.join("settings.json").exists());
    assert!(d.fails(&["export", "json", out.to_str().unwrap()])["message"].as_str().unwrap().contains("not empty"));
    // Settings, membership, customer, invoice, item, and this device's events (the export).
    assert_eq!(d.json(&["store", "rebuild-index"])["documents"], 6);
    let compact = d.json(&["store", "compact"]);
    assert_eq!(compact["documents"], 6);
    assert_eq!(d.json(&["store", "verify"])["ok"], true);
    assert_eq!(
        d.json(&["invoice", "list"]).as_array().unwrap().len(),
        1,
        "the index is whole after rebuild and compaction"
    );
}

#[test]
fn payments_are_recorded_against_issued_invoices() {
    let d = Daftar::init();
    let customer = d.customer("Paying Customer", None);
    let inv = d.json(&["invoice", "create", "--customer", &customer, "--line", "Service|1|100"]);
    let id = inv["id"].as_str().unwrap();
    d.json(&["invoice", "issue", id]);
    let paid = d.json(&["invoice", "pay", id, "--amount", "40", "--date", "2026-11-20", "--method", "bank_transfer"]);
    assert_eq!(paid["totals"]["paid"], "40.00");
    assert_eq!(paid["totals"]["due"], "75.00");
    assert_eq!(paid["payments"][0]["method"], "bank_transfer");
    let bad = d.fails(&["invoice", "pay", id, "--amount", "-5"]);
    assert_eq!(bad["message"], "payment 2: amount must be greater than 0 (got -5.00)");
    let bad_date = d.fails(&["invoice", "pay", id, "--amount", "5", "--date", "20/11/2026"]);
    assert!(bad_date["message"].as_str().unwrap().contains("date must be written YYYY-MM-DD"), "{bad_date}");
}

#[test]
fn usage_errors_and_damaged_files_are_reported_as_json() {
    let d = Daftar::init();
    let usage = d.fails(&["invoice", "frobnicate"]);
    assert_eq!(usage["code"], "usage");
    assert!(usage["message"].as_str().unwrap().contains("frobnicate"), "{usage}");

    let uninitialised = Daftar::new();
    let missing = uninitialised.fails(&["invoice", "list"]);
    assert_eq!(missing["code"], "not_initialised");
    assert!(missing["message"].as_str().unwrap().contains("daftar init"), "the message names the fix: {missing}");

    let profile = d.data_dir().join("daftar.json");
    let original = std::fs::read(&profile).unwrap();
    std::fs::write(&profile, b"{ this is not json").unwrap();
    let bad_profile = d.fails(&["invoice", "list"]);
    assert_eq!(bad_profile["code"], "corrupt");
    assert!(bad_profile["message"].as_str().unwrap().contains("daftar.json"), "{bad_profile}");
    std::fs::write(&profile, original).unwrap();

    let db = d.data_dir().join("daftar.db");
    let bytes = std::fs::read(&db).unwrap();
    std::fs::write(&db, &bytes[..bytes.len() / 3]).unwrap();
    let truncated = d.fails(&["store", "verify"]);
    assert_eq!(truncated["code"], "corrupt", "{truncated}");
}

#[test]
fn customers_and_items_are_edited_and_refused_in_the_trash() {
    let d = Daftar::init();
    let customer = d.customer("Old Name", None);
    let edited = d.json(&["customer", "edit", &customer, "--name", "New Name", "--vat-number", "300000000000003"]);
    assert_eq!(edited["name"], "New Name");
    assert_eq!(edited["vat_number"], "300000000000003");
    let cleared = d.json(&["customer", "edit", &customer, "--vat-number", ""]);
    assert_eq!(cleared["vat_number"], Value::Null, "an empty value removes the VAT number");
    let item = d.json(&["item", "add", "--name", "Crate", "--price", "12.50"]);
    let id = item["id"].as_str().unwrap();
    let zero = d.json(&["item", "edit", id, "--vat-category", "Z", "--exemption-code", "VATEX-SA-32"]);
    assert_eq!(zero["vat"]["code"], "Z");
    assert_eq!(zero["vat"]["exemption_reason"], "Export of goods");
    let bad = d.fails(&["item", "edit", id, "--price", "1.234"]);
    assert!(bad["message"].as_str().unwrap().contains("at most 2 decimal places"), "{bad}");
    d.json(&["item", "delete", id]);
    let in_trash = d.fails(&["item", "edit", id, "--name", "x"]);
    assert_eq!(in_trash["code"], "conflict");
    assert!(in_trash["message"].as_str().unwrap().contains("restore it first"), "{in_trash}");
    assert_eq!(d.json(&["item", "history", id]).as_array().unwrap().len(), 3);
}

//! The audit log through the real binary: who did what and when, filters and CSV, and a chain
//! that names the first entry edited or removed in the database.

mod common;

use common::Daftar;
use serde_json::Value;

const PASSPHRASE: &str = "an audit test passphrase";

/// Runs with the key file's passphrase (so the test can open the database itself).
fn run(d: &Daftar, args: &[&str]) -> std::process::Output {
    d.command().env("DAFTAR_PASSPHRASE", PASSPHRASE).arg("--json").args(args).output().unwrap()
}

fn json(d: &Daftar, args: &[&str]) -> Value {
    let out = run(d, args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn database(d: &Daftar) -> rusqlite::Connection {
    common::open_database(&d.data_dir(), PASSPHRASE)
}

/// `daftar audit verify` on a log that was tampered with: it must fail (status 1) and say how.
fn failed_check(d: &Daftar) -> Value {
    let out = run(d, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_audit_log_says_who_did_what_and_names_the_first_entry_edited_or_removed() {
    let d = Daftar::new();
    let init = ["init", "--seller-name", "Acme Trading", "--vat-number", "300000000000003", "--key-file"];
    json(&d, &[&init[..], &["--member", "Huda Al-Harbi"]].concat());
    let customer = json(&d, &["customer", "add", "--name", "Nour Bakery", "--vat-number", "311111111111113"]);
    let customer = customer["id"].as_str().unwrap().to_owned();
    let invoice = json(&d, &["invoice", "create", "--customer", &customer, "--line", "Flour|2|50"]);
    let invoice = invoice["id"].as_str().unwrap().to_owned();
    json(&d, &["invoice", "edit", &invoice, "--add-line", "Yeast|1|9.5"]);
    json(&d, &["invoice", "issue", &invoice]);
    let other = json(&d, &["invoice", "create", "--customer", &customer, "--line", "Salt|1|3"]);
    json(&d, &["invoice", "delete", other["id"].as_str().unwrap()]);

    let log = json(&d, &["audit"]);
    let actions: Vec<&str> = log.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for wanted in ["create workspace", "create", "edit", "issue A-000001", "delete"] {
        assert!(actions.contains(&wanted), "{wanted} missing from {actions:?}");
    }
    let device = json(&d, &["info"])["device_id"].clone();
    assert!(log.as_array().unwrap().iter().all(|e| e["device"] == device), "every entry names the device");
    assert!(log.as_array().unwrap().iter().all(|e| e["member"] == "Huda Al-Harbi"), "and the member named at init");
    let hers = json(&d, &["audit", "--member", "Huda Al-Harbi"]);
    assert_eq!(hers.as_array().unwrap().len(), log.as_array().unwrap().len() + 1, "hers, and the read of the log");
    let about = json(&d, &["audit", "--invoice", "A-000001"]);
    let edit = about.as_array().unwrap().iter().find(|e| e["action"] == "edit").unwrap();
    let yeast = edit["changes"].as_array().unwrap().iter().find(|c| c["after"] == "Yeast");
    assert!(yeast.is_some_and(|c| c["before"].is_null()), "the edit shows the line it added: {edit}");
    assert!(about.as_array().unwrap().iter().all(|e| e["document"] == invoice.as_str()), "--invoice filters");
    let csv = d.command().env("DAFTAR_PASSPHRASE", PASSPHRASE).args(["audit", "--format", "csv"]).output().unwrap();
    let csv = String::from_utf8(csv.stdout).unwrap();
    assert!(csv.starts_with("seq,at,device,device_name,action,kind,document,field,before,after"), "{csv}");
    assert!(csv.contains("issue A-000001"));
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).format("%Y-%m-%d").to_string();
    assert!(json(&d, &["audit", "--since", &tomorrow]).as_array().unwrap().is_empty());
    let check = json(&d, &["audit", "verify"]);
    assert_eq!(check["ok"], true, "{check}");

    // Edit an entry in the database: named.
    let conn = database(&d);
    let issued: i64 =
        conn.query_row("SELECT seq FROM audit WHERE action = 'issue A-000001'", [], |r| r.get(0)).unwrap();
    conn.execute("UPDATE audit SET action = 'edit' WHERE seq = ?1", [issued]).unwrap();
    let check = failed_check(&d);
    assert_eq!(check["first_bad"]["seq"], issued, "{check}");
    assert!(check["first_bad"]["problem"].as_str().unwrap().contains("edited"), "{check}");
    conn.execute("UPDATE audit SET action = 'issue A-000001' WHERE seq = ?1", [issued]).unwrap();
    assert_eq!(json(&d, &["audit", "verify"])["ok"], true, "put back, it verifies again");

    // A chain rewritten without the device's key fails the signature.
    let tail: i64 = conn.query_row("SELECT max(seq) FROM audit WHERE signature IS NOT NULL", [], |r| r.get(0)).unwrap();
    let signature: Vec<u8> =
        conn.query_row("SELECT signature FROM audit WHERE seq = ?1", [tail], |r| r.get(0)).unwrap();
    conn.execute("UPDATE audit SET signature = zeroblob(64) WHERE seq = ?1", [tail]).unwrap();
    let check = failed_check(&d);
    assert_eq!(check["first_bad"]["seq"], tail, "{check}");
    assert!(check["first_bad"]["problem"].as_str().unwrap().contains("signature"), "{check}");
    conn.execute("UPDATE audit SET signature = ?2 WHERE seq = ?1", rusqlite::params![tail, signature]).unwrap();

    // Remove an entry: the one after it is named.
    conn.execute("DELETE FROM audit WHERE seq = ?1", [issued]).unwrap();
    let check = failed_check(&d);
    let next: i64 = conn.query_row("SELECT min(seq) FROM audit WHERE seq > ?1", [issued], |r| r.get(0)).unwrap();
    assert_eq!(check["first_bad"]["seq"], next, "{check}");
    assert!(check["first_bad"]["problem"].as_str().unwrap().contains("removed or changed"), "{check}");
}

#[test]
fn cutting_off_the_newest_entries_is_noticed_too() {
    let d = Daftar::new();
    json(&d, &["init", "--seller-name", "Acme Trading", "--vat-number", "300000000000003", "--key-file"]);
    let customer = json(&d, &["customer", "add", "--name", "Nour Bakery"]);
    json(&d, &["customer", "edit", customer["id"].as_str().unwrap(), "--name", "Nour Bakery Co"]);
    assert_eq!(json(&d, &["audit", "verify"])["ok"], true);
    // The chain itself still links up without its newest entry; the change it recorded is
    // still in the store, and names the cut.
    let conn = database(&d);
    let newest: i64 =
        conn.query_row("SELECT max(seq) FROM audit WHERE change_hash IS NOT NULL", [], |r| r.get(0)).unwrap();
    conn.execute("DELETE FROM audit WHERE seq >= ?1", [newest]).unwrap();
    let check = failed_check(&d);
    assert_eq!(check["first_bad"]["seq"], newest, "{check}");
    assert!(check["first_bad"]["problem"].as_str().unwrap().contains("newest entries were removed"), "{check}");
}

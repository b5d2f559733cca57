//! Two devices and the real relay: changes travel sealed, a lost workspace comes back from the
//! relay with the recovery key, history and trash included.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::Daftar;
use serde_json::Value;

struct Relay {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Relay {
    fn start() -> Relay {
        let binary = std::path::Path::new(env!("CARGO_BIN_EXE_daftar")).with_file_name("daftar-relay");
        assert!(binary.exists(), "{} is missing: run the whole suite (cargo test --workspace)", binary.display());
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(binary)
            .args(["--listen", "127.0.0.1:0", "--database"])
            .arg(dir.path().join("relay.db"))
            .env("DAFTAR_RELAY_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("daftar-relay listening on ").unwrap().to_owned();
        Relay { child, url, _dir: dir }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ids(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids
}

#[test]
fn a_lost_workspace_comes_back_from_the_relay_and_edits_flow_both_ways() {
    let relay = Relay::start();
    let a = Daftar::new();
    let init = a.json(&["init", "--seller-name", "Acme Trading", "--vat-number", "300000000000003"]);
    let (workspace, recovery) = (init["workspace_id"].as_str().unwrap(), init["recovery_key"].as_str().unwrap());
    let customer = a.customer("Nour Bakery", Some("311111111111113"));
    let kept = a.json(&["invoice", "create", "--customer", &customer, "--line", "Flour|2|50"]);
    let kept_id = kept["id"].as_str().unwrap();
    a.json(&["invoice", "edit", kept_id, "--add-line", "Yeast|1|9.5"]);
    a.json(&["invoice", "issue", kept_id]);
    let binned = a.json(&["invoice", "create", "--customer", &customer, "--line", "Sugar|1|7"]);
    a.json(&["invoice", "delete", binned["id"].as_str().unwrap()]);
    assert_eq!(a.json(&["relay", "add", &relay.url])["workspace_id"], workspace);
    let round = a.json(&["sync"]);
    assert!(round["relays"][0]["pushed"].as_u64().unwrap() >= 7, "{round}");

    // Every device is lost: a new data directory, the relay and the recovery key.
    let b = Daftar::new();
    let wrong = b.fails(&[
        "recover",
        "--relay",
        &relay.url,
        "--workspace",
        workspace,
        "--recovery-key",
        "7QK2M9-7QK2M9-7QK2M9-7QK2M9-7QK2M9-7QK2M9",
    ]);
    assert!(wrong["message"].as_str().unwrap().contains("typo"), "a mistyped key is caught before the relay: {wrong}");
    let recovered = b.json(&["recover", "--relay", &relay.url, "--workspace", workspace, "--recovery-key", recovery]);
    assert!(recovered["rejected"].as_array().unwrap().is_empty(), "{recovered}");
    assert_eq!(ids(&b.json(&["invoice", "list"])), ids(&a.json(&["invoice", "list"])));
    assert_eq!(
        ids(&b.json(&["invoice", "list", "--deleted"])),
        ids(&a.json(&["invoice", "list", "--deleted"])),
        "the trash comes back"
    );
    let there = b.json(&["invoice", "show", "A-000001"]);
    assert_eq!(there["totals"]["gross"], "125.93");
    assert_eq!(
        b.json(&["invoice", "history", kept_id]),
        a.json(&["invoice", "history", kept_id]),
        "history comes back whole"
    );
    assert_eq!(b.json(&["seller", "show"])["name"], "Acme Trading");
    assert_eq!(b.json(&["store", "verify"])["ok"], true);

    // The recovered device works on and the first device hears of it.
    let from_b = b.json(&["invoice", "create", "--customer", &customer, "--line", "Dates|3|20"]);
    let issued_b = b.json(&["invoice", "issue", from_b["id"].as_str().unwrap()]);
    assert!(issued_b["number"].as_str().unwrap().starts_with('R'), "a recovered device numbers in its own series");
    b.json(&["sync"]);
    a.json(&["sync"]);
    assert_eq!(a.json(&["invoice", "show", from_b["id"].as_str().unwrap()])["number"], issued_b["number"]);
    assert_eq!(a.json(&["store", "verify"])["ok"], true);
    let status = a.json(&["sync", "status"]);
    assert_eq!(status[0]["pending"], 0, "{status}");
}

#[test]
fn an_invited_device_joins_once_and_a_revoked_one_is_shut_out() {
    let relay = Relay::start();
    let a = Daftar::new();
    a.json(&["init", "--seller-name", "Acme Trading", "--vat-number", "300000000000003"]);
    let customer = a.customer("Nour Bakery", None);
    a.json(&["invoice", "create", "--customer", &customer, "--line", "Flour|2|50"]);
    a.json(&["relay", "add", &relay.url]);
    a.json(&["sync"]);
    let invite = a.json(&["invite", "--role", "clerk"]);
    let code = invite["code"].as_str().unwrap();
    assert!(code.starts_with("daftar-invite-1."), "{invite}");

    let c = Daftar::new();
    let joined = c.json(&["join", code]);
    assert_eq!(joined["status"], "approved");
    assert_eq!(c.json(&["invoice", "list"]).as_array().unwrap().len(), 1, "the new device bootstraps");
    let again = Daftar::new();
    let refused = again.fails(&["join", code]);
    assert!(refused["message"].as_str().unwrap().contains("already used"), "an invite works once: {refused}");
    assert!(again.fails(&["join", "daftar-invite-1.garbage"])["message"].as_str().unwrap().contains("damaged"));

    let from_c = c.json(&["invoice", "create", "--customer", &customer, "--line", "Dates|1|30"]);
    c.json(&["sync"]);
    a.json(&["sync"]);
    assert_eq!(a.json(&["invoice", "show", from_c["id"].as_str().unwrap()])["totals"]["gross"], "34.50");
    let devices = a.json(&["devices", "list"]);
    assert_eq!(devices.as_array().unwrap().len(), 2);

    let c_id = joined["device_id"].as_str().unwrap();
    assert_eq!(a.json(&["devices", "revoke", c_id])["status"], "revoked");
    let shut_out = c.fails(&["sync"]);
    assert!(shut_out["message"].as_str().unwrap().contains("no relay could be reached"), "{shut_out}");
    let status = c.json(&["sync", "status"]);
    assert!(status[0]["last_error"].as_str().unwrap().contains("revoked"), "the reason is recorded: {status}");
}

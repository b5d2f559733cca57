//! Backups through the real `daftar` binary: made and checked, listed, restored on a machine
//! that has only the file and the recovery key, refused when damaged or opened with the wrong
//! key, safe against `kill -9`, and the two ways back into a live store (merge, revert) with
//! two devices and the real relay.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::{Daftar, Relay, STUCK, SplitMix, export, two_devices};
use serde_json::Value;

/// A workspace with a little of everything: customers, an item, drafts, an edited and an
/// issued invoice, one in the trash. Returns the recovery key.
fn workspace(d: &Daftar) -> String {
    let init = d.json(&["init", "--seller-name", "Acme Trading", "--vat-number", "300000000000003"]);
    let customer = d.customer("Nour Bakery", Some("311111111111113"));
    d.customer("Dana Cafe", None);
    d.json(&["item", "add", "--name", "Flour sack", "--price", "50"]);
    let first = d.json(&["invoice", "create", "--customer", &customer, "--line", "Flour|2|50"]);
    let first = first["id"].as_str().unwrap();
    d.json(&["invoice", "edit", first, "--add-line", "Yeast|1|9.5"]);
    d.json(&["invoice", "issue", first]);
    d.json(&["invoice", "create", "--customer", &customer, "--line", "Sugar|1|7"]);
    let binned = d.json(&["invoice", "create", "--customer", &customer, "--line", "Salt|1|3"]);
    d.json(&["invoice", "delete", binned["id"].as_str().unwrap()]);
    init["recovery_key"].as_str().unwrap().to_owned()
}

fn file_of(backup: &Value) -> PathBuf {
    PathBuf::from(backup["file"].as_str().unwrap())
}

fn ids(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids
}

#[test]
fn a_backup_is_checked_listed_and_restores_on_a_new_machine_with_only_the_recovery_key() {
    let a = Daftar::new();
    let recovery = workspace(&a);
    let backup = a.json(&["backup", "create"]);
    assert_eq!(backup["verified"], true, "{backup}");
    assert_eq!(backup["counts"]["invoices"], 3);
    assert_eq!(backup["counts"]["customers"], 2);
    assert_eq!(backup["counts"]["items"], 1);
    assert_eq!(backup["counts"]["documents"], 8, "the workspace settings and membership too");
    assert_eq!(backup["reason"], "manual");
    let file = file_of(&backup);
    assert!(file.exists() && file.starts_with(a.data_dir().join("backups")), "{backup}");
    assert_eq!(backup["bytes"].as_u64().unwrap(), std::fs::metadata(&file).unwrap().len());
    let list = a.json(&["backup", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0], backup, "list prints what create printed");
    let checked = a.json(&["backup", "verify", file.to_str().unwrap()]);
    assert_eq!(checked[0]["verified"], true, "{checked}");

    // Nothing readable in the backup file: no name, no amount.
    let bytes = std::fs::read(&file).unwrap();
    for secret in ["Nour Bakery", "311111111111113", "Flour", "109.50"] {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} is readable in the backup");
    }

    // A new machine: no workspace, only the file and the recovery key.
    let b = Daftar::new();
    let restored = b.json(&[
        "backup",
        "restore",
        file.to_str().unwrap(),
        "--into",
        b.data_dir().to_str().unwrap(),
        "--recovery-key",
        &recovery,
    ]);
    assert_eq!(restored["counts"]["invoices"], 3, "{restored}");
    assert_eq!(export(&b), export(&a), "every record comes back as it was");
    assert_eq!(ids(&b.json(&["invoice", "list", "--deleted"])), ids(&a.json(&["invoice", "list", "--deleted"])));
    let first = a.json(&["invoice", "show", "A-000001"]);
    let first = first["id"].as_str().unwrap();
    assert_eq!(b.json(&["invoice", "history", first]), a.json(&["invoice", "history", first]), "history too");
    assert_eq!(b.json(&["store", "verify"])["ok"], true);
    // The restored directory is a device of its own, numbering in its own series.
    let info = b.json(&["info"]);
    assert_eq!(info["workspace_id"], a.json(&["info"])["workspace_id"]);
    assert_ne!(info["device_id"], a.json(&["info"])["device_id"]);
    let draft = b.json(&["invoice", "list"]).as_array().unwrap().iter().find(|i| i["status"] == "draft").cloned();
    let issued = b.json(&["invoice", "issue", draft.unwrap()["id"].as_str().unwrap()]);
    assert!(issued["number"].as_str().unwrap().starts_with('B'), "{issued}");

    // On the device that made it, the keyring opens it: no recovery key needed.
    let inspect = a.dir.path().join("inspect");
    a.json(&["backup", "restore", file.to_str().unwrap(), "--into", inspect.to_str().unwrap()]);
    // Elsewhere, without the recovery key: told what to pass.
    let c = Daftar::new();
    let elsewhere = c.dir.path().join("x");
    let refused = c.fails(&["backup", "restore", file.to_str().unwrap(), "--into", elsewhere.to_str().unwrap()]);
    assert!(refused["message"].as_str().unwrap().contains("--recovery-key"), "{refused}");
    // Another workspace's recovery key: refused, nothing created.
    let other = Daftar::new();
    let other_key = other.json(&["init", "--seller-name", "Other", "--vat-number", "300000000000003"])["recovery_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let wrong = c.fails(&[
        "backup",
        "restore",
        file.to_str().unwrap(),
        "--into",
        elsewhere.to_str().unwrap(),
        "--recovery-key",
        &other_key,
    ]);
    assert_eq!(wrong["code"], "wrong_key", "{wrong}");
    assert!(wrong["message"].as_str().unwrap().contains("recovery key does not open"), "{wrong}");
    assert!(!elsewhere.exists(), "a refused restore creates nothing");
    let verify_wrong = a.run(&["--json", "backup", "verify", file.to_str().unwrap(), "--recovery-key", &other_key]);
    assert_eq!(verify_wrong.status.code(), Some(1));
    // Another workspace's store cannot merge it.
    let foreign = other.fails(&["backup", "restore", file.to_str().unwrap(), "--merge"]);
    assert_eq!(foreign["code"], "wrong_workspace", "{foreign}");
    // A non-empty target is refused.
    let busy = a.fails(&["backup", "restore", file.to_str().unwrap(), "--into", inspect.to_str().unwrap()]);
    assert!(busy["message"].as_str().unwrap().contains("not empty"), "{busy}");
}

/// Runs `verify`, `restore --merge` and `restore --into` on a damaged copy and checks each is
/// refused with the expected error code and that nothing was written anywhere.
fn refused_everywhere(d: &Daftar, damaged: &Path, recovery: &str, before: &std::collections::BTreeMap<String, Value>) {
    let what = damaged.display().to_string();
    let out = d.run(&["--json", "backup", "verify", &what]);
    assert_eq!(out.status.code(), Some(1), "verify accepted {what}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let code = report[0]["code"].as_str().unwrap();
    assert!(["damaged_backup", "not_a_backup"].contains(&code), "{report}");
    assert!(!report[0]["problem"].as_str().unwrap().is_empty());
    let merge = d.fails(&["backup", "restore", &what, "--merge"]);
    assert!(["damaged_backup", "not_a_backup"].contains(&merge["code"].as_str().unwrap()), "{merge}");
    let target = d.dir.path().join("never");
    let into = d.fails(&["backup", "restore", &what, "--into", target.to_str().unwrap(), "--recovery-key", recovery]);
    assert!(["damaged_backup", "not_a_backup"].contains(&into["code"].as_str().unwrap()), "{into}");
    assert!(!target.exists(), "a refused restore creates nothing");
    assert_eq!(&export(d), before, "a refused restore changes nothing");
}

#[test]
fn flipped_bits_and_truncation_anywhere_are_refused_and_nothing_is_written() {
    let d = Daftar::new();
    let recovery = workspace(&d);
    let file = file_of(&d.json(&["backup", "create"]));
    let good = std::fs::read(&file).unwrap();
    let before = export(&d);
    let damaged = d.dir.path().join("damaged.daftar-backup");
    let mut random = SplitMix(0xBAC0_0001);
    // The header's start, its length, its JSON, the first chunk's length, and random places
    // in the body; every byte of a smaller file is covered by daftar-backup's own tests.
    let header_end = 14 + u32::from_be_bytes(good[10..14].try_into().unwrap()) as usize;
    let mut places = vec![0, 7, 8, 11, 13, 20, header_end - 2, header_end, header_end + 3, good.len() - 1];
    places.extend((0..6).map(|_| header_end + 4 + random.below(good.len() - header_end - 4)));
    for at in places {
        let mut bytes = good.clone();
        bytes[at] ^= 1 << random.below(8);
        std::fs::write(&damaged, &bytes).unwrap();
        refused_everywhere(&d, &damaged, &recovery, &before);
    }
    for length in [0, 9, header_end - 1, header_end + 2, good.len() / 2, good.len() - 1] {
        std::fs::write(&damaged, &good[..length]).unwrap();
        refused_everywhere(&d, &damaged, &recovery, &before);
    }
    let mut longer = good.clone();
    longer.extend_from_slice(b"more");
    std::fs::write(&damaged, &longer).unwrap();
    refused_everywhere(&d, &damaged, &recovery, &before);

    // A damaged file in the backup folder is listed as failed once checked, and `verify --all`
    // fails while the good one still verifies.
    let in_folder = file.with_file_name("daftar-damaged.daftar-backup");
    let mut bytes = good.clone();
    bytes[good.len() / 2] ^= 4;
    std::fs::write(&in_folder, &bytes).unwrap();
    let out = d.run(&["--json", "backup", "verify", "--all"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let verdicts: Vec<(String, bool)> = report
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["file"].as_str().unwrap().to_owned(), r["verified"].as_bool().unwrap()))
        .collect();
    assert!(verdicts.contains(&(file.display().to_string(), true)), "{report}");
    assert!(verdicts.contains(&(in_folder.display().to_string(), false)), "{report}");
}

#[test]
fn kill_9_during_backups_leaves_every_earlier_backup_verified_and_no_partial_listed() {
    let d = Daftar::init();
    let customer = d.customer("Nour Bakery", None);
    let out = d.run(&["debug", "write-loop", "--customer", &customer, "--count", "1500", "--drafts"]);
    assert!(out.status.success());
    // Keep every backup, so that only a kill could lose one.
    d.json(&["backup", "settings", "--keep-last", "1000"]);
    let started = std::time::Instant::now();
    let first = d.json(&["backup", "create"]);
    let duration = started.elapsed();
    assert_eq!(first["verified"], true);
    let mut random = SplitMix(0xBAC0_0009);
    let mut verified: Vec<String> = vec![first["file"].as_str().unwrap().to_owned()];
    let mut killed = 0;
    // Kills are timed by what the backup has done, not by the clock: in even rounds as soon as
    // its partial file appears (so it is killed while writing, however fast the machine), in odd
    // rounds at a random moment within the time the first backup took (anywhere from start-up
    // to the rename).
    let folder = Path::new(verified[0].as_str()).parent().unwrap().to_owned();
    let partials = || -> Vec<String> {
        std::fs::read_dir(&folder)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".partial"))
            .collect()
    };
    for round in 0..16 {
        let before = partials();
        let mut child =
            d.command().args(["backup", "create"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        if round % 2 == 0 {
            let deadline = std::time::Instant::now() + STUCK;
            while partials().iter().all(|p| before.contains(p)) {
                assert!(child.try_wait().unwrap().is_none(), "round {round}: the backup ended before writing");
                assert!(std::time::Instant::now() < deadline, "round {round}: no partial file appeared");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        } else {
            std::thread::sleep(duration.mul_f64(random.below(1001) as f64 / 1000.0));
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        let list = d.json(&["backup", "list"]);
        for backup in list.as_array().unwrap() {
            let name = Path::new(backup["file"].as_str().unwrap()).file_name().unwrap().to_string_lossy().into_owned();
            assert!(!name.starts_with('.') && !name.ends_with(".partial"), "round {round}: a partial file is listed");
        }
        let listed: Vec<&str> = list.as_array().unwrap().iter().map(|b| b["file"].as_str().unwrap()).collect();
        for file in &verified {
            assert!(listed.contains(&file.as_str()), "round {round}: verified backup {file} disappeared");
        }
        // Whatever is listed is a complete backup: it verifies.
        let out = d.run(&["--json", "backup", "verify", "--all"]);
        assert!(out.status.success(), "round {round} (killed: {status}): {}", String::from_utf8_lossy(&out.stdout));
        if status.success() {
            verified = listed.iter().map(|f| (*f).to_owned()).collect();
        } else {
            killed += 1;
        }
    }
    assert!(killed > 0, "no backup was killed while running ({duration:?} each)");
    eprintln!("backups: {killed} of 16 killed while running");
    assert_eq!(d.json(&["store", "verify"])["ok"], true);
    // The next backup sweeps nothing it should keep and still works.
    assert_eq!(d.json(&["backup", "create"])["verified"], true);
}

#[test]
fn retention_prunes_old_backups_but_never_the_newest_verified_one() {
    let d = Daftar::init();
    d.customer("Nour Bakery", None);
    let settings = d.json(&["backup", "settings", "--keep-hourly", "2", "--keep-daily", "0", "--keep-monthly", "0"]);
    assert_eq!(settings["keep"]["hourly"], 2, "{settings}");
    let mut last = Value::Null;
    for _ in 0..4 {
        last = d.json(&["backup", "create"]);
    }
    // Four backups within one hour: one hourly bucket, so only the newest stays.
    let list = d.json(&["backup", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["file"], last["file"]);
    // Keeping nothing still keeps the newest verified backup.
    d.json(&["backup", "settings", "--keep-hourly", "0"]);
    d.json(&["backup", "create"]);
    assert_eq!(d.json(&["backup", "prune"])["removed"].as_array().unwrap().len(), 0);
    assert_eq!(d.json(&["backup", "list"]).as_array().unwrap().len(), 1);
    // Another folder.
    let elsewhere = d.dir.path().join("usb-drive");
    let settings = d.json(&["backup", "settings", "--dir", elsewhere.to_str().unwrap()]);
    assert_eq!(settings["dir"], std::fs::canonicalize(&elsewhere).unwrap().to_str().unwrap());
    let made = d.json(&["backup", "create"]);
    assert!(file_of(&made).starts_with(std::fs::canonicalize(&elsewhere).unwrap()), "{made}");
}

#[test]
fn three_hundred_deleted_invoices_come_back_on_both_devices_and_later_edits_stay() {
    let relay = Relay::start();
    let (a, b, customer) = two_devices(&relay);
    let out = a.run(&["debug", "write-loop", "--customer", &customer, "--count", "310", "--drafts"]);
    assert!(out.status.success());
    a.json(&["sync"]);
    b.json(&["sync"]);
    let all = ids(&b.json(&["invoice", "list", "--limit", "1000"]));
    assert_eq!(all.len(), 310);
    let backup = file_of(&a.json(&["backup", "create"]));

    // On the second device, someone deletes 300 invoices; on the first, two others are edited.
    let (doomed, kept) = all.split_at(300);
    let mut args = vec!["invoice", "delete"];
    args.extend(doomed.iter().map(String::as_str));
    assert_eq!(b.json(&args).as_array().unwrap().len(), 300);
    b.json(&["sync"]);
    a.json(&["sync"]);
    for id in &kept[..2] {
        a.json(&["invoice", "edit", id, "--add-line", "Late addition|1|5"]);
    }
    assert_eq!(a.json(&["invoice", "list", "--limit", "1000"]).as_array().unwrap().len(), 10);

    let report = a.json(&["backup", "restore", backup.to_str().unwrap(), "--revert-to-backup", "--only-deleted"]);
    assert_eq!(report["reverted"].as_array().unwrap().len(), 300, "{report}");
    assert!(report["refused"].as_array().unwrap().is_empty(), "{report}");
    a.json(&["sync"]);
    b.json(&["sync"]);
    for device in [&a, &b] {
        assert_eq!(ids(&device.json(&["invoice", "list", "--limit", "1000"])), all, "all 300 are back");
        for id in &kept[..2] {
            let invoice = device.json(&["invoice", "show", id]);
            assert_eq!(invoice["lines"].as_array().unwrap().len(), 2, "a later edit was kept: {invoice}");
        }
        assert_eq!(device.json(&["store", "verify"])["ok"], true);
    }
    let history = b.json(&["invoice", "history", &doomed[0]]);
    let messages: Vec<&str> = history.as_array().unwrap().iter().map(|v| v["message"].as_str().unwrap()).collect();
    assert!(messages.contains(&"delete"), "history keeps the delete: {messages:?}");
    assert!(messages.last().unwrap().starts_with("revert to backup of "), "{messages:?}");

    // A purged draft comes back with --merge, history and all.
    let purged = &kept[5];
    let before = a.json(&["invoice", "history", purged]);
    a.json(&["invoice", "delete", purged]);
    a.json(&["invoice", "purge", purged, "--yes"]);
    assert_eq!(a.fails(&["invoice", "show", purged])["code"], "not_found");
    let merged = a.json(&["backup", "restore", backup.to_str().unwrap(), "--merge"]);
    let back: Vec<&str> =
        merged["brought_back"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(back, vec![purged.as_str()], "{merged}");
    assert_eq!(a.json(&["invoice", "history", purged]), before);
    assert_eq!(a.json(&["store", "verify"])["ok"], true);
    // Merging again brings nothing more back.
    let again = a.json(&["backup", "restore", backup.to_str().unwrap(), "--merge"]);
    assert!(again["brought_back"].as_array().unwrap().is_empty(), "{again}");
}

#[test]
fn a_drill_recovers_everything_from_the_backup_and_from_the_relay_and_names_what_differs() {
    let relay = Relay::start();
    let d = Daftar::new();
    let recovery = workspace(&d);
    d.json(&["relay", "add", &relay.url]);
    d.json(&["sync"]);

    // No backup yet: the backup path fails, so the drill does.
    let out = d.run(&["--json", "drill", "--recovery-key", &recovery]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["backup"]["error"].as_str().unwrap().contains("no backup"), "{report}");
    assert_eq!(report["relay"]["ok"], true, "{report}");

    d.json(&["backup", "create"]);
    let report = d.json(&["drill", "--recovery-key", &recovery]);
    assert_eq!(report["ok"], true, "{report}");
    for path in ["backup", "relay"] {
        let p = &report[path];
        assert_eq!(p["documents"], 8, "{path}: {p}");
        for list in ["missing", "differs", "extra"] {
            assert!(p[list].as_array().unwrap().is_empty(), "{path} {list}: {p}");
        }
        assert!(p["recovery_point"].is_string() && p["recovery_point_age_seconds"].as_i64().unwrap() < 600, "{p}");
        assert!(p["seconds"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(report["relay"]["source"], relay.url.as_str());

    // An edit after the backup, synced: the backup path names it, the relay path has it.
    let draft = d.json(&["invoice", "list"]).as_array().unwrap().iter().find(|i| i["status"] == "draft").cloned();
    let draft = draft.unwrap()["id"].as_str().unwrap().to_owned();
    d.json(&["invoice", "edit", &draft, "--add-line", "Late|1|1"]);
    d.json(&["sync"]);
    let report = d.json(&["drill", "--recovery-key", &recovery]);
    assert_eq!(report["backup"]["differs"], serde_json::json!([draft]), "{report}");
    assert!(report["relay"]["differs"].as_array().unwrap().is_empty(), "{report}");
    // Without the recovery key the relay path is skipped, not failed.
    let report = d.json(&["drill"]);
    assert!(report["relay"]["skipped"].is_string(), "{report}");
    // Another workspace's recovery key fails both paths.
    let other = Daftar::new();
    let other_key = other.json(&["init", "--seller-name", "Other", "--vat-number", "300000000000003"])["recovery_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = d.run(&["--json", "drill", "--recovery-key", &other_key]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["backup"]["ok"], false, "{report}");
    assert_eq!(report["relay"]["ok"], false, "{report}");
    // The drill left the relay's device list and this store as they were.
    assert_eq!(d.json(&["devices", "list"]).as_array().unwrap().len(), 1);
    assert_eq!(d.json(&["store", "verify"])["ok"], true);
}

#[test]
fn a_full_disk_leaves_no_partial_backup_and_earlier_backups_untouched() {
    let d = Daftar::init();
    let customer = d.customer("Nour Bakery", None);
    assert!(d.run(&["debug", "write-loop", "--customer", &customer, "--count", "800", "--drafts"]).status.success());
    let first = d.json(&["backup", "create"]);
    assert!(first["bytes"].as_u64().unwrap() > 400_000, "{first}");
    // A file size limit stands in for a full disk: writing past 300 KB fails (EFBIG), with
    // the signal that would kill the process ignored, as a full disk's ENOSPC would not kill.
    let out = std::process::Command::new("sh")
        .args(["-c", "trap '' XFSZ; ulimit -f 600; exec \"$0\" --json backup create", env!("CARGO_BIN_EXE_daftar")])
        .env("DAFTAR_DATA_DIR", d.data_dir())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the backup cannot have been written");
    let error: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(error["error"]["code"], "io", "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains(".partial"), "{error}");
    let names: Vec<String> = std::fs::read_dir(d.data_dir().join("backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![file_of(&first).file_name().unwrap().to_string_lossy().into_owned()], "no partial file");
    let list = d.json(&["backup", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert!(d.run(&["backup", "verify", "--all"]).status.success(), "the earlier backup still verifies");
    assert_eq!(d.json(&["store", "verify"])["ok"], true);
}

#[test]
fn a_revert_turns_back_re_priced_items_and_deleted_customers_but_never_an_issued_invoice() {
    let d = Daftar::init();
    let customer = d.customer("Nour Bakery", None);
    let gone = d.customer("Dana Cafe", None);
    let item = d.json(&["item", "add", "--name", "Flour sack", "--price", "50"])["id"].as_str().unwrap().to_owned();
    let draft = d.json(&["invoice", "create", "--customer", &customer, "--line", "Flour|2|50"]);
    let draft = draft["id"].as_str().unwrap().to_owned();
    let backup = file_of(&d.json(&["backup", "create"]));

    // Since the backup: the item re-priced, a customer deleted, the draft issued.
    d.json(&["item", "edit", &item, "--price", "65"]);
    d.json(&["customer", "delete", &gone]);
    d.json(&["invoice", "issue", &draft]);

    // --only limits the revert to what is named.
    let only = d.json(&["backup", "restore", backup.to_str().unwrap(), "--revert-to-backup", "--only", &item]);
    let reverted: Vec<&str> = only["reverted"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(reverted, vec![item.as_str()], "{only}");
    assert_eq!(d.json(&["item", "show", &item])["unit_price"], "50.00");
    assert_eq!(d.json(&["customer", "show", &gone])["deleted"], true, "not named, not reverted");

    let all = d.json(&["backup", "restore", backup.to_str().unwrap(), "--revert-to-backup"]);
    let reverted: Vec<&str> = all["reverted"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(reverted, vec![gone.as_str()], "{all}");
    assert_eq!(d.json(&["customer", "show", &gone])["deleted"], false, "the customer is out of the trash");
    let refused = all["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{all}");
    assert_eq!(refused[0]["id"], draft.as_str());
    assert!(refused[0]["reason"].as_str().unwrap().contains("credit note"), "{all}");
    let invoice = d.json(&["invoice", "show", &draft]);
    assert_eq!(invoice["status"], "issued", "an issued invoice stays issued: {invoice}");
    assert_eq!(d.json(&["store", "verify"])["ok"], true);
}

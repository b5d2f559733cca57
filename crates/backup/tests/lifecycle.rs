//! Backups over a store's life: before a schema migration (none possible, no migration), on the
//! schedule and on exit, and a failed attempt surfacing as a warning.

use std::path::Path;
use std::sync::Arc;

use daftar_domain::{Customer, CustomerId, SellerProfile};
use daftar_store::{InitOptions, KeyChoice, SCHEMA_VERSION, Store, SystemClock, Unlock};

const PASSPHRASE: &str = "correct horse battery staple";

fn seller() -> SellerProfile {
    SellerProfile { name: "Acme Trading".into(), vat_number: "300000000000003".into(), ..Default::default() }
}

/// A store (key file, so no keyring is needed) with one customer, set back to the schema
/// before backups were recorded, as an older Daftar left it.
fn old_store(dir: &Path) {
    let options = InitOptions {
        seller: seller(),
        series: None,
        key: KeyChoice::Passphrase(PASSPHRASE.into()),
        device_name: "office".into(),
        member: None,
        existing: None,
    };
    let (mut store, _) = Store::init(dir, options, Arc::new(SystemClock)).unwrap();
    let customer = customer("Nour Bakery");
    store.create(&customer, "create").unwrap();
    drop(store);
    let conn = database(dir);
    // Everything migrations 6 and later made goes, as if they had never run.
    conn.execute_batch(
        "DROP TABLE backups; DROP TABLE drills; DROP TABLE quarantine; DROP TRIGGER audit_change; DROP TABLE audit; DROP TABLE seals; \
         ALTER TABLE changes DROP COLUMN message; PRAGMA user_version = 5;",
    )
    .unwrap();
}

/// The store's database opened directly, with the key from its key file.
fn database(dir: &Path) -> rusqlite::Connection {
    let key = daftar_keys::key_file::open(&dir.join("key.json"), PASSPHRASE).unwrap();
    let conn = rusqlite::Connection::open(dir.join("daftar.db")).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA key = \"x'{}'\"; PRAGMA cipher_hmac_algorithm = HMAC_SHA256;",
        hex::encode(key.expose_secret_bytes())
    ))
    .unwrap();
    conn
}

fn customer(name: &str) -> Customer {
    Customer {
        id: CustomerId::from_uuid(uuid::Uuid::now_v7()),
        name: name.into(),
        vat_number: None,
        address: Default::default(),
        email: String::new(),
        phone: String::new(),
        created_at: chrono::Utc::now(),
        deleted: None,
    }
}

fn schema_version(store: &Store) -> i64 {
    let conn = database(&store.info().data_dir);
    conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap()
}

fn open(dir: &Path) -> Result<Store, daftar_store::StoreError> {
    let unlock = Unlock { passphrase: Some(PASSPHRASE.into()) };
    Store::open_with(dir, &unlock, Arc::new(SystemClock), Some(&daftar_backup::before_migration))
}

#[test]
fn a_migration_is_preceded_by_a_verified_backup_of_the_old_store() {
    let dir = tempfile::tempdir().unwrap();
    old_store(dir.path());
    let mut store = open(dir.path()).unwrap();
    assert_eq!(schema_version(&store), SCHEMA_VERSION);
    let records = store.backup_records().unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].reason, "migration");
    assert_eq!(records[0].verified, Some(true));
    assert_eq!(records[0].counts.customers, 1);
    assert!(records[0].file.starts_with(dir.path().canonicalize().unwrap().join("backups")));
    daftar_backup::verify(&mut store, &records[0].file, None).unwrap();
    // The changes stored before the audit log existed were put into it, chained.
    let audit = store.verify_audit().unwrap();
    assert!(audit.ok && audit.count >= 2, "{audit:?}");
    // Opening again migrates nothing, so backs up nothing.
    drop(store);
    let store = open(dir.path()).unwrap();
    assert_eq!(store.backup_records().unwrap().len(), 1);
}

#[test]
fn without_anywhere_to_write_the_backup_nothing_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    old_store(dir.path());
    // Where the backups would go is taken by a file (root ignores permissions, so a read-only
    // folder would not do).
    std::fs::write(dir.path().join("backups"), b"not a folder").unwrap();
    let Err(error) = open(dir.path()) else { panic!("no backup, no migration") };
    assert_eq!(error.code(), "backup_failed", "{error}");
    assert!(error.to_string().contains("version 5 to"), "{error}");
    std::fs::remove_file(dir.path().join("backups")).unwrap();
    let store = open(dir.path()).unwrap();
    assert_eq!(store.backup_records().unwrap().len(), 1, "the next open backs up, then migrates");
}

#[test]
fn the_schedule_calls_for_a_backup_once_the_interval_has_passed_and_exit_only_after_changes() {
    let dir = tempfile::tempdir().unwrap();
    old_store(dir.path());
    let mut store = open(dir.path()).unwrap();
    let now = chrono::Utc::now();
    // The migration backup counts: hourly backups are not due yet.
    assert!(!daftar_backup::due(&store, now).unwrap());
    assert!(daftar_backup::due(&store, now + chrono::Duration::minutes(61)).unwrap());
    let mut settings = store.backup_settings().unwrap();
    settings.every_minutes = 0;
    store.set_backup_settings(&settings).unwrap();
    assert!(!daftar_backup::due(&store, now + chrono::Duration::days(30)).unwrap(), "off means off");

    // Nothing changed since the newest backup: a backup on exit would repeat it.
    assert!(!daftar_backup::changed_since_last(&store).unwrap());
    let customer = customer("Dana Cafe");
    store.create(&customer, "create").unwrap();
    assert!(daftar_backup::changed_since_last(&store).unwrap());
    daftar_backup::create(&mut store, "exit", None).unwrap();
    assert!(!daftar_backup::changed_since_last(&store).unwrap());
}

#[test]
fn a_backup_that_cannot_be_written_is_a_recorded_failure_and_the_status_warns() {
    let dir = tempfile::tempdir().unwrap();
    old_store(dir.path());
    let mut store = open(dir.path()).unwrap();
    assert_eq!(daftar_backup::status(&store).unwrap().warning, None, "a fresh verified backup: nothing to say");
    let blocked = dir.path().join("usb-drive");
    std::fs::write(&blocked, b"a file where the folder should be").unwrap();
    let mut settings = store.backup_settings().unwrap();
    settings.dir = Some(blocked.clone());
    store.set_backup_settings(&settings).unwrap();
    let error = daftar_backup::create(&mut store, "schedule", None).unwrap_err();
    assert_eq!(error.code(), "io", "{error}");
    let status = daftar_backup::status(&store).unwrap();
    match status.warning {
        Some(daftar_backup::BackupWarning::AttemptFailed { message, .. }) => {
            assert!(message.contains("usb-drive"), "{message}")
        }
        other => panic!("expected a failed attempt, got {other:?}"),
    }
    // The next good backup clears the warning.
    std::fs::remove_file(&blocked).unwrap();
    daftar_backup::create(&mut store, "schedule", None).unwrap();
    assert_eq!(daftar_backup::status(&store).unwrap().warning, None);
}

//! The store through its public API, on real encrypted databases in temporary directories.

use std::sync::Arc;

use daftar_domain::{Amount, Customer, CustomerId, InvoiceStatus, SellerProfile, VatCategory};
use daftar_store::{
    InitOptions, InvoiceEdit, InvoiceQuery, KeyChoice, LineInput, NewInvoice, Store, StoreError, SystemClock, Unlock,
};
use uuid::Uuid;

const PASSPHRASE: &str = "correct horse battery";

fn seller() -> SellerProfile {
    SellerProfile { name: "Acme Trading".into(), vat_number: "300000000000003".into(), ..Default::default() }
}

fn init(dir: &std::path::Path) -> Store {
    Store::init(
        dir,
        InitOptions {
            seller: seller(),
            series: None,
            key: KeyChoice::Passphrase(PASSPHRASE.into()),
            device_name: "test".into(),
            member: None,
            existing: None,
        },
        Arc::new(SystemClock),
    )
    .expect("init")
    .0
}

fn reopen(dir: &std::path::Path) -> Store {
    Store::open(dir, &Unlock { passphrase: Some(PASSPHRASE.into()) }, Arc::new(SystemClock)).expect("open")
}

fn customer(store: &mut Store, name: &str) -> CustomerId {
    new_customer(store, name).id
}

fn new_customer(store: &mut Store, name: &str) -> Customer {
    let customer = Customer {
        id: CustomerId::from_uuid(Uuid::now_v7()),
        name: name.into(),
        vat_number: Some("311111111111113".into()),
        address: Default::default(),
        email: String::new(),
        phone: String::new(),
        created_at: chrono::Utc::now(),
        deleted: None,
    };
    store.create(&customer, "create").unwrap();
    customer
}

fn line(description: &str, qty: &str, price: &str) -> LineInput {
    LineInput {
        description: description.into(),
        quantity: qty.parse().unwrap(),
        unit_price: price.parse().unwrap(),
        discount: Amount::ZERO,
        vat: VatCategory::standard(),
    }
}

#[test]
fn invoices_survive_reopen_with_history_and_gapless_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = init(dir.path());
    let acme = customer(&mut store, "Nour Bakery");
    let invoice = store
        .create_invoice(NewInvoice {
            customer: Some(acme),
            lines: vec![line("Flour sacks", "2", "50")],
            ..Default::default()
        })
        .unwrap();
    store.edit_invoice(invoice.id, vec![InvoiceEdit::AddLine(line("Delivery", "1", "15"))]).unwrap();
    let issued = store.issue_invoice(invoice.id).unwrap();
    assert_eq!(issued.number.as_deref(), Some("A-000001"));
    let second = store
        .create_invoice(NewInvoice { customer: Some(acme), lines: vec![line("x", "1", "1")], ..Default::default() })
        .unwrap();
    assert_eq!(store.issue_invoice(second.id).unwrap().number.as_deref(), Some("A-000002"), "numbers are consecutive");
    drop(store);

    let mut store = reopen(dir.path());
    let loaded = store.invoice(invoice.id).unwrap();
    assert_eq!(loaded.status, InvoiceStatus::Issued);
    assert_eq!(loaded.lines.len(), 2);
    let history = store.history(invoice.id.into()).unwrap();
    let messages: Vec<_> = history.iter().map(|v| v.message.as_str()).collect();
    assert_eq!(messages, ["create", "edit", "issue A-000001"]);
    let first: daftar_domain::Invoice = store.get_at(invoice.id.into(), 1).unwrap();
    assert_eq!(first.lines.len(), 1, "version 1 had one line");
    let diff = store.diff(invoice.id.into(), 1, 2).unwrap();
    assert!(diff.iter().any(|c| c.path == "lines[2].description"), "{diff:?}");

    let refused = store.edit_invoice(invoice.id, vec![InvoiceEdit::Notes("changed".into())]).unwrap_err();
    assert!(matches!(refused, StoreError::State(_)), "{refused}");
    assert!(store.delete_invoice(invoice.id).is_err(), "issued invoices cannot be deleted");
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);

    let compacted = store.compact().unwrap();
    assert!(compacted.documents >= 3);
    assert_eq!(store.history(invoice.id.into()).unwrap(), history, "compaction keeps every version");
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn delete_restore_revert_and_search() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = init(dir.path());
    let acme = customer(&mut store, "Nour Bakery");
    let invoice = store
        .create_invoice(NewInvoice {
            customer: Some(acme),
            lines: vec![line("Saffron", "1", "100")],
            notes: "urgent".into(),
            ..Default::default()
        })
        .unwrap();
    store.edit_invoice(invoice.id, vec![InvoiceEdit::SetLine(1, line("Saffron", "3", "100"))]).unwrap();
    let found = store.list_invoices(&InvoiceQuery { text: Some("saffron nou".into()), ..Default::default() }).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].gross.to_string(), "345.00");

    store.delete_invoice(invoice.id).unwrap();
    assert!(store.list_invoices(&InvoiceQuery::default()).unwrap().is_empty());
    assert_eq!(store.list_invoices(&InvoiceQuery { deleted: true, ..Default::default() }).unwrap().len(), 1);
    assert!(matches!(store.edit_invoice(invoice.id, vec![]), Err(StoreError::State(_))));
    store.restore_invoice(invoice.id).unwrap();

    let reverted = store.revert_invoice(invoice.id, 1).unwrap();
    assert_eq!(reverted.lines[0].quantity.to_string(), "1");
    assert_eq!(store.history(invoice.id.into()).unwrap().len(), 5, "create, edit, delete, restore, revert");
    assert!(store.verify().unwrap().is_ok());

    store.delete_invoice(invoice.id).unwrap();
    store.purge_invoice(invoice.id).unwrap();
    assert!(matches!(store.invoice(invoice.id), Err(StoreError::NotFound { .. })));
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn wrong_passphrase_and_damaged_database_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    drop(init(dir.path()));
    let wrong =
        Store::open(dir.path(), &Unlock { passphrase: Some("not the passphrase".into()) }, Arc::new(SystemClock));
    assert!(matches!(wrong, Err(StoreError::Key(daftar_keys::KeyError::WrongPassphrase { .. }))));
    let db = dir.path().join("daftar.db");
    let mut bytes = std::fs::read(&db).unwrap();
    for b in &mut bytes[..64] {
        *b ^= 0xFF;
    }
    std::fs::write(&db, bytes).unwrap();
    let damaged = Store::open(dir.path(), &Unlock { passphrase: Some(PASSPHRASE.into()) }, Arc::new(SystemClock));
    assert!(matches!(damaged, Err(StoreError::Corrupt { .. })), "{damaged:?}");
}

#[test]
fn nothing_readable_in_the_database_or_its_wal_while_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = init(dir.path());
    let name = "Qasr Al Tamr Dates";
    customer(&mut store, name);
    store
        .create_invoice(NewInvoice { lines: vec![line("Medjool premium box", "4", "87.65")], ..Default::default() })
        .unwrap();
    // The store is still open: the WAL holds the latest pages.
    let mut seen_wal = false;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        seen_wal |= path.to_string_lossy().ends_with("-wal");
        let bytes = std::fs::read(&path).unwrap();
        for secret in [name, "311111111111113", "Medjool", "87.65", "Acme Trading"] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret:?} is readable in {}",
                path.display()
            );
        }
    }
    assert!(seen_wal, "the check must cover a live WAL file");
    drop(store);
}

#[test]
fn device_secrets_are_kept_and_the_recovery_key_unwraps_the_workspace_key() {
    let dir = tempfile::tempdir().unwrap();
    let (store, recovery) = Store::init(
        dir.path(),
        InitOptions {
            seller: seller(),
            series: None,
            key: KeyChoice::Passphrase(PASSPHRASE.into()),
            device_name: "test".into(),
            member: None,
            existing: None,
        },
        Arc::new(SystemClock),
    )
    .unwrap();
    let workspace = store.info().workspace_id;
    let public = store.device_signing_key().unwrap().public_key();
    let workspace_key = store.workspace_key(1).unwrap().expose_secret_bytes().to_owned();
    drop(store);
    let store = reopen(dir.path());
    assert_eq!(store.device_signing_key().unwrap().public_key(), public, "the device key survives reopening");
    assert_eq!(store.workspace_key(1).unwrap().expose_secret_bytes(), &workspace_key);
    assert!(store.workspace_key(2).is_err(), "there is no epoch 2 yet");
    let wrapped = store.recovery_wrapped_workspace_key().unwrap();
    let printed = recovery.expose_printable();
    let typed = daftar_sync::RecoveryKey::parse(&printed.to_lowercase()).unwrap();
    assert_eq!(typed.unwrap_workspace_key(workspace, &wrapped).unwrap().expose_secret_bytes(), &workspace_key);
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let compact = printed.replace('-', "");
        assert!(!bytes.windows(compact.len()).any(|w| w == compact.as_bytes()), "the recovery key is stored nowhere");
    }
}

#[test]
fn changes_flow_through_the_outbox_into_another_store_once() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut a, mut b) = (init(a_dir.path()), init(b_dir.path()));
    a.add_relay("https://relay.example").unwrap();
    let nour = customer(&mut a, "Nour Bakery");
    let invoice = a
        .create_invoice(NewInvoice {
            customer: Some(nour),
            lines: vec![line("Flour", "2", "50")],
            ..Default::default()
        })
        .unwrap();
    a.edit_invoice(invoice.id, vec![InvoiceEdit::AddLine(line("Yeast", "1", "15"))]).unwrap();
    assert_eq!(a.relays().unwrap()[0].pending, 5, "settings, membership, customer, invoice create and edit");

    // Compaction must not fold away what the relay has not acknowledged.
    a.compact().unwrap();
    let outbox = a.outbox("https://relay.example", 100).unwrap();
    assert_eq!(outbox.len(), 5);
    let sender = a.info().device_id;
    let workspace_documents = [daftar_store::DocKind::Settings, daftar_store::DocKind::Membership];
    for change in outbox.iter().filter(|c| !workspace_documents.contains(&c.kind)) {
        assert!(b.apply_remote(change.document, change.kind, sender, &change.bytes).unwrap());
        assert!(
            !b.apply_remote(change.document, change.kind, sender, &change.bytes).unwrap(),
            "applying twice is harmless"
        );
    }
    let there = b.invoice(invoice.id).unwrap();
    assert_eq!(there.lines.len(), 2);
    assert_eq!(b.list_invoices(&InvoiceQuery { text: Some("yeast".into()), ..Default::default() }).unwrap().len(), 1);
    assert_eq!(b.history(invoice.id.into()).unwrap().len(), 2, "history arrives with the changes");
    assert!(b.verify().unwrap().is_ok(), "{:?}", b.verify().unwrap().problems);

    a.mark_pushed("https://relay.example", outbox.last().unwrap().seq).unwrap();
    assert_eq!(a.relays().unwrap()[0].pending, 0);
    a.compact().unwrap();
    assert!(a.outbox("https://relay.example", 100).unwrap().is_empty());
    assert_eq!(a.history(invoice.id.into()).unwrap().len(), 2, "compaction after acknowledgement keeps history");
}

/// Invoice ids made in one burst share a millisecond and the top of a UUIDv7 counter, so they
/// want the same index key: each must still get a row of its own (1,000 starting 256 keys
/// before the end of their millisecond's block overflow into the next block). The cost of finding free keys is
/// measured by the bulk-import benchmark, not here.
#[test]
fn invoices_from_one_millisecond_each_get_their_own_index_row() {
    use daftar_domain::{Invoice, InvoiceId, InvoiceKind};
    let dir = tempfile::tempdir().unwrap();
    let mut store = init(dir.path());
    let buyer = new_customer(&mut store, "Nour Bakery");
    // Version 7, one millisecond, the same 12 bits after it (near the top of the block, so
    // the burst overflows into the next); only the last bytes differ.
    let mut base = *Uuid::now_v7().as_bytes();
    base[6] = 0x70 | 0x0F;
    base[7] = 0x00;
    let burst: Vec<Invoice> = (0..1_000u32)
        .map(|n| {
            let mut bytes = base;
            bytes[12..16].copy_from_slice(&n.to_be_bytes());
            let mut invoice = Invoice::draft(
                InvoiceId::from_uuid(Uuid::from_bytes(bytes)),
                InvoiceKind::Standard,
                chrono::Utc::now(),
            );
            invoice.customer = Some(buyer.snapshot());
            invoice.lines = vec![line(&format!("Burst item {n}"), "1", "10").into_line_with(None)];
            invoice
        })
        .collect();
    store.create_many(&burst, "import").unwrap();
    let all = store.list_invoices(&InvoiceQuery { limit: Some(usize::MAX), ..Default::default() }).unwrap();
    assert_eq!(all.len(), 1_000);
    let distinct: std::collections::HashSet<&str> = all.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(distinct.len(), 1_000);
    let found = store.list_invoices(&InvoiceQuery { text: Some("Burst item 999".into()), ..Default::default() });
    assert_eq!(found.unwrap().len(), 1, "search finds the last of the burst");
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "the index matches every document: {:?}", report.problems);
    // A single create in the same millisecond block still finds a key.
    let mut bytes = base;
    bytes[12..16].copy_from_slice(&9_999u32.to_be_bytes());
    let mut one = burst[0].clone();
    one.id = InvoiceId::from_uuid(Uuid::from_bytes(bytes));
    store.create(&one, "create").unwrap();
    assert_eq!(
        store.list_invoices(&InvoiceQuery { limit: Some(usize::MAX), ..Default::default() }).unwrap().len(),
        1_001
    );
}

#[test]
fn compaction_reports_each_committed_batch_and_what_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = init(dir.path());
    let buyer = new_customer(&mut store, "Nour Bakery");
    let invoices: Vec<daftar_domain::Invoice> = (0..600)
        .map(|n| {
            let mut invoice = daftar_domain::Invoice::draft(
                daftar_domain::InvoiceId::from_uuid(Uuid::now_v7()),
                daftar_domain::InvoiceKind::Standard,
                chrono::Utc::now(),
            );
            invoice.customer = Some(buyer.snapshot());
            invoice.lines = vec![line(&format!("Item {n}"), "1", "10").into_line_with(None)];
            invoice
        })
        .collect();
    store.create_many(&invoices, "import").unwrap();
    let mut seen: Vec<(usize, usize)> = Vec::new();
    let report = store.compact_with_progress(|so_far, remaining| seen.push((so_far.documents, remaining))).unwrap();
    // 600 invoices, the customer and the workspace's own documents: three batches of 256.
    let total = report.documents;
    assert!(total > 600, "{report:?}");
    assert_eq!(seen.len(), total.div_ceil(256), "one report per batch: {seen:?}");
    assert_eq!(seen.first(), Some(&(256, total - 256)));
    assert_eq!(seen.last(), Some(&(total, 0)), "the last report is the whole compaction");
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 > w[1].1), "{seen:?}");
    assert_eq!(store.compact_with_progress(|_, _| {}).unwrap().documents, 0, "nothing left to fold");
    assert!(store.verify().unwrap().is_ok());
}

/// A snapshot or backup part is measured before Automerge inflates anything in it (security
/// review F5): a bomb in a document's save or in one of its changes, or a part whose documents
/// together inflate past the part's budget, refuses the part and names the document.
#[test]
fn a_snapshot_part_with_a_compression_bomb_is_refused_before_inflating() {
    use daftar_store::{MAX_INFLATED_BYTES, MAX_PART_INFLATED_BYTES, prepare_snapshot};
    use daftar_sync::snapshot::{SnapshotChange, SnapshotDocument};
    use std::io::Write;
    /// A compressed change chunk of `mib` MiB of zeros.
    fn zeros_chunk(mib: usize) -> Vec<u8> {
        let zeros = vec![0u8; 1 << 20];
        let mut deflate = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        for _ in 0..mib {
            deflate.write_all(&zeros).unwrap();
        }
        let deflated = deflate.finish().unwrap();
        let mut chunk = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 2];
        let mut length = deflated.len();
        while length >= 0x80 {
            chunk.push((length & 0x7f) as u8 | 0x80);
            length >>= 7;
        }
        chunk.push(length as u8);
        chunk.extend(deflated);
        chunk
    }
    let document = |saved: Option<Vec<u8>>, change: Option<Vec<u8>>| SnapshotDocument {
        document: daftar_domain::DocumentId::from_uuid(Uuid::now_v7()),
        kind: 1,
        saved,
        changes: change
            .map(|bytes| SnapshotChange { device: daftar_domain::DeviceId::from_uuid(Uuid::now_v7()), bytes })
            .into_iter()
            .collect(),
        proofs: Vec::new(),
    };
    let over = (MAX_INFLATED_BYTES >> 20) as usize + 1;
    for bomb in [document(Some(zeros_chunk(over)), None), document(None, Some(zeros_chunk(over)))] {
        let id = bomb.document;
        let refused = prepare_snapshot(vec![bomb], None).unwrap_err().to_string();
        assert!(refused.contains("compression bomb") && refused.contains(&id.to_string()), "{refused}");
    }
    // Each under the limit, together past the part's budget.
    let each = (MAX_INFLATED_BYTES >> 20) as usize - 4;
    let count = (MAX_PART_INFLATED_BYTES >> 20) as usize / each + 1;
    let part: Vec<_> = (0..count).map(|_| document(None, Some(zeros_chunk(each)))).collect();
    let refused = prepare_snapshot(part, None).unwrap_err().to_string();
    assert!(refused.contains("compression bomb"), "{refused}");
}

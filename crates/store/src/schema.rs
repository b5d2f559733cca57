//! Append-only migrations, tracked with `PRAGMA user_version`. Never edit a released step; add
//! the next one.

use std::path::Path;

use rusqlite::Connection;

use crate::error::{Result, StoreError};

const MIGRATIONS: &[&str] = &[
    // 1: documents as Automerge change rows and snapshots; derived index tables.
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;

    -- Device secrets of data directories set up with a passphrase key file (with the OS keyring
    -- they live in the keyring instead). Never included in backups or sync.
    CREATE TABLE secrets (
        name  TEXT PRIMARY KEY,
        value BLOB NOT NULL
    ) WITHOUT ROWID;

    -- One row per Automerge document. `heads` caches the current heads (derivable).
    CREATE TABLE documents (
        id         TEXT PRIMARY KEY,
        kind       TEXT NOT NULL CHECK (kind IN ('settings', 'invoice', 'customer', 'item')),
        created_at INTEGER NOT NULL,
        heads      BLOB NOT NULL
    ) WITHOUT ROWID;

    -- Each Automerge change as its own row, in local arrival order. Compaction folds a
    -- document's rows into `snapshots` in one transaction.
    CREATE TABLE changes (
        seq    INTEGER PRIMARY KEY,
        doc_id TEXT NOT NULL REFERENCES documents(id),
        hash   BLOB NOT NULL,
        bytes  BLOB NOT NULL,
        device TEXT NOT NULL,
        time   INTEGER NOT NULL,
        UNIQUE (doc_id, hash)
    );

    -- A saved document (Automerge `save()`: full history, compressed).
    CREATE TABLE snapshots (
        doc_id       TEXT PRIMARY KEY REFERENCES documents(id),
        bytes        BLOB NOT NULL,
        heads        BLOB NOT NULL,
        change_count INTEGER NOT NULL,
        created_at   INTEGER NOT NULL
    ) WITHOUT ROWID;

    -- Gapless numbering: the last number used in each series.
    CREATE TABLE series_counters (
        series TEXT PRIMARY KEY,
        last   INTEGER NOT NULL
    ) WITHOUT ROWID;

    -- Relays this device syncs with. `push_cursor` is the last local change row (changes.seq)
    -- the relay has acknowledged; `pull_cursor` the last relay sequence number applied here.
    CREATE TABLE relays (
        url         TEXT PRIMARY KEY,
        added_at    INTEGER NOT NULL,
        push_cursor INTEGER NOT NULL DEFAULT 0,
        pull_cursor INTEGER NOT NULL DEFAULT 0,
        last_sync   INTEGER,
        last_error  TEXT
    ) WITHOUT ROWID;

    -- Explicit, recorded purges of drafts.
    CREATE TABLE purges (
        doc_id    TEXT PRIMARY KEY,
        kind      TEXT NOT NULL,
        device    TEXT NOT NULL,
        time      INTEGER NOT NULL,
        summary   TEXT NOT NULL
    ) WITHOUT ROWID;

    -- Derived from the documents; `daftar store rebuild-index` recreates these.
    -- `rowid` is a sort key taken from the UUIDv7 id (creation time in ms, then 12 random bits),
    -- so "newest first" is a walk down the primary key and search can stop after one page.
    CREATE TABLE invoice_index (
        rowid         INTEGER PRIMARY KEY,
        id            TEXT NOT NULL UNIQUE,
        number        TEXT,
        kind          TEXT NOT NULL,
        status        TEXT NOT NULL,
        customer_id   TEXT,
        customer_name TEXT NOT NULL,
        issued_at     TEXT,
        supply_date   TEXT,
        due_date      TEXT,
        currency      TEXT NOT NULL,
        net           INTEGER NOT NULL,
        vat           INTEGER NOT NULL,
        gross         INTEGER NOT NULL,
        due           INTEGER NOT NULL,
        created_at    TEXT NOT NULL,
        deleted       INTEGER NOT NULL
    );
    -- Live invoices are listed by walking the primary key; the trash has its own small index.
    CREATE INDEX invoice_index_trash ON invoice_index (deleted) WHERE deleted = 1;
    CREATE INDEX invoice_index_status ON invoice_index (deleted, status);
    CREATE INDEX invoice_index_customer ON invoice_index (customer_id);
    CREATE INDEX invoice_index_number ON invoice_index (number) WHERE number IS NOT NULL;

    CREATE VIRTUAL TABLE invoice_search USING fts5 (
        number, customer, lines, notes,
        content = '', contentless_delete = 1,
        tokenize = 'unicode61 remove_diacritics 2',
        prefix = '1 2 3'
    );

    -- Search text on its way into invoice_search. It is written in the same transaction as the
    -- invoice, so it is exactly as durable, and moved into FTS5 in batches (one FTS segment per
    -- batch instead of one per write) before any search and every few dozen writes.
    -- `replace` = 1 when invoice_search may already hold an older text for the row.
    CREATE TABLE search_queue (
        rowid    INTEGER PRIMARY KEY,
        number   TEXT NOT NULL,
        customer TEXT NOT NULL,
        lines    TEXT NOT NULL,
        notes    TEXT NOT NULL,
        replace  INTEGER NOT NULL
    );

    CREATE TABLE customer_index (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        vat_number TEXT,
        email      TEXT NOT NULL,
        phone      TEXT NOT NULL,
        city       TEXT NOT NULL,
        deleted    INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX customer_index_name ON customer_index (deleted, name COLLATE NOCASE);

    CREATE TABLE item_index (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        unit_price INTEGER NOT NULL,
        vat_code   TEXT NOT NULL,
        deleted    INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX item_index_name ON item_index (deleted, name COLLATE NOCASE);
    "#,
    // 2: conflicts met by issued invoices (see conflicts.rs). One row per cause, so applying the
    // same change again records nothing new.
    r#"
    CREATE TABLE conflicts (
        doc_id      TEXT NOT NULL,
        kind        TEXT NOT NULL,
        cause       BLOB NOT NULL,
        number      TEXT NOT NULL,
        void_number TEXT,
        fields      TEXT NOT NULL,
        devices     TEXT NOT NULL,
        detected_at INTEGER NOT NULL,
        UNIQUE (doc_id, kind, cause)
    );
    "#,
    // 3: envelopes a relay served that were refused (forged, altered, from an unknown device),
    // kept as evidence; nothing of them was applied.
    r#"
    CREATE TABLE refused_envelopes (
        relay       TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        envelope_id TEXT NOT NULL,
        reason      TEXT NOT NULL,
        at          INTEGER NOT NULL,
        PRIMARY KEY (relay, seq)
    ) WITHOUT ROWID;
    "#,
    // 4: sorting the invoice list by customer, total or date without sorting every row: the
    // app's list pages through them with OFFSET as it scrolls.
    r#"
    CREATE INDEX invoice_index_by_customer ON invoice_index (deleted, customer_name COLLATE NOCASE);
    CREATE INDEX invoice_index_by_total ON invoice_index (deleted, gross);
    CREATE INDEX invoice_index_by_date ON invoice_index (deleted, coalesce(issued_at, created_at));
    "#,
    // 5: ZATCA e-invoicing. Each device is its own EGS unit: its invoice counter (ICV) and the
    // hash of its last e-invoice (the next one's PIH) advance in the same transaction that
    // issues, so the chain has no gaps and no forks. `zatca_submissions` is this device's
    // queue of e-invoices to clear or report, with ZATCA's answer; other devices' invoices
    // are theirs to submit; it keeps each e-invoice verbatim. `zatca_egs` holds this unit's certificate and onboarding state
    // (the private key is derived from the device's keyring-held seed, never stored here).
    r#"
    CREATE TABLE zatca_chain (
        unit INTEGER PRIMARY KEY CHECK (unit = 1),
        icv  INTEGER NOT NULL,
        pih  TEXT NOT NULL
    );
    CREATE TABLE zatca_egs (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE zatca_submissions (
        invoice_id   TEXT PRIMARY KEY,
        number       TEXT NOT NULL,
        icv          INTEGER NOT NULL UNIQUE,
        subtype      TEXT NOT NULL CHECK (subtype IN ('standard', 'simplified')),
        uuid         TEXT NOT NULL,
        hash         TEXT NOT NULL,
        pih          TEXT NOT NULL,
        -- This unit's e-invoice verbatim: the invoice document may come to carry another
        -- device's after a concurrent issue (see conflicts.rs), but this one stays in the chain.
        xml          TEXT NOT NULL,
        status       TEXT NOT NULL CHECK (status IN ('not_reportable', 'pending', 'reported', 'cleared', 'rejected')),
        issued_at    INTEGER NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        last_attempt INTEGER,
        last_error   TEXT,
        response     TEXT,
        cleared_xml  TEXT
    ) WITHOUT ROWID;
    CREATE INDEX zatca_submissions_by_status ON zatca_submissions (status, icv);
    "#,
    // 6: the backups this device made and their checks; disaster-recovery drills.
    r#"
    CREATE TABLE backups (
        file         TEXT PRIMARY KEY,
        created_at   INTEGER NOT NULL,
        bytes        INTEGER NOT NULL,
        reason       TEXT NOT NULL,
        counts       TEXT NOT NULL,
        heads_digest TEXT NOT NULL,
        verified     INTEGER,
        verified_at  INTEGER,
        problem      TEXT
    ) WITHOUT ROWID;
    CREATE TABLE drills (
        id     INTEGER PRIMARY KEY,
        at     INTEGER NOT NULL,
        ok     INTEGER NOT NULL,
        report TEXT NOT NULL
    );
    "#,
    // 7: received changes refused because their sender's role does not allow them.
    r#"
    CREATE TABLE quarantine (
        doc_id TEXT NOT NULL,
        hash   BLOB NOT NULL,
        kind   TEXT NOT NULL,
        bytes  BLOB NOT NULL,
        sender TEXT NOT NULL,
        role   TEXT NOT NULL,
        reason TEXT NOT NULL,
        at     INTEGER NOT NULL,
        PRIMARY KEY (doc_id, hash)
    ) WITHOUT ROWID;
    "#,
    // 8: the audit log (see audit.rs): an entry per change row, added by a trigger so that no
    // write path can skip it, and local events; each hashed onto the chain as it is inserted
    // (`daftar_audit_hash`, registered on every connection), each commit's last one signed.
    r#"
    CREATE TABLE audit (
        seq         INTEGER PRIMARY KEY,
        at          INTEGER NOT NULL,
        device      TEXT NOT NULL,
        action      TEXT,
        kind        TEXT,
        doc_id      TEXT,
        change_hash BLOB,
        detail      TEXT,
        prev_hash   BLOB NOT NULL,
        hash        BLOB NOT NULL,
        signature   BLOB
    );
    -- The change's message, as it is stored, so that the log need not decode the change.
    ALTER TABLE changes ADD COLUMN message TEXT;
    CREATE TRIGGER audit_change AFTER INSERT ON changes BEGIN
        INSERT INTO audit (seq, at, device, action, kind, doc_id, change_hash, prev_hash, hash)
        SELECT n.seq, NEW.time, NEW.device, NEW.message, n.kind, NEW.doc_id, NEW.hash, n.prev,
               daftar_audit_hash(n.prev, n.seq, NEW.time, NEW.device, NEW.message, n.kind, NEW.doc_id, NEW.hash, NULL)
        FROM (SELECT coalesce((SELECT max(seq) FROM audit), 0) + 1 AS seq,
                     coalesce((SELECT hash FROM audit ORDER BY seq DESC LIMIT 1), zeroblob(32)) AS prev,
                     (SELECT kind FROM documents WHERE id = NEW.doc_id) AS kind) AS n;
    END;
    "#,
    // 9: the membership document, a new kind. SQLite cannot alter a CHECK constraint, and
    // rebuilding `documents` would fight the foreign keys that point at it; widening the list
    // changes nothing on disk, which is the case SQLite documents for editing the schema text
    // (`migrate` bumps `schema_version` after it, so every connection re-reads the schema).
    r#"
    PRAGMA writable_schema = ON;
    UPDATE sqlite_schema
       SET sql = replace(sql, 'kind IN (''settings'', ''invoice'', ''customer'', ''item'')',
                              'kind IN (''settings'', ''invoice'', ''customer'', ''item'', ''membership'')')
     WHERE type = 'table' AND name = 'documents';
    PRAGMA writable_schema = OFF;
    "#,
    // 10: devices' audit events, a new kind (widened the same way as 9).
    r#"
    PRAGMA writable_schema = ON;
    UPDATE sqlite_schema
       SET sql = replace(sql, '''membership'')', '''membership'', ''events'')')
     WHERE type = 'table' AND name = 'documents';
    PRAGMA writable_schema = OFF;
    "#,
    // 11: each change's seal proof (daftar_sync::SealProof: its envelope less the content), so
    // snapshots can show who sealed every change they carry; quarantined changes keep theirs as
    // evidence.
    r#"
    CREATE TABLE seals (
        doc_id TEXT NOT NULL,
        hash   BLOB NOT NULL,
        device TEXT NOT NULL,
        proof  BLOB NOT NULL,
        PRIMARY KEY (doc_id, hash)
    ) WITHOUT ROWID;
    ALTER TABLE quarantine ADD COLUMN proof BLOB;
    "#,
];

/// The newest schema this build understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(crate) fn migrate(conn: &Connection, dir: &Path) -> Result<()> {
    let read_version =
        |conn: &Connection| -> Result<i64> { Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?) };
    let check = |version: i64| {
        if version > SCHEMA_VERSION {
            Err(StoreError::SchemaTooNew { dir: dir.to_owned(), found: version, supported: SCHEMA_VERSION })
        } else {
            Ok(())
        }
    };
    let version = read_version(conn)?;
    check(version)?;
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    // Another process may be migrating too: take the write lock, then look again.
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let version = read_version(conn)?;
        check(version)?;
        for (index, step) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            conn.execute_batch(step)?;
            if step.contains("writable_schema") {
                let schema: i64 = conn.query_row("PRAGMA schema_version", [], |r| r.get(0))?;
                conn.pragma_update(None, "schema_version", schema + 1)?;
            }
            conn.pragma_update(None, "user_version", index as i64 + 1)?;
        }
        crate::audit::backfill(conn)?;
        Ok(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
    }
    Ok(())
}

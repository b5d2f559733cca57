//! Keeping the store honest: verify, rebuild the index, compact history, export, bulk import.

use std::collections::HashMap;
use std::path::Path;

use automerge::Automerge;
use daftar_domain::{Customer, DocumentId, Invoice, Item};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::document;
use crate::error::{Result, StoreError};
use crate::records::{DocKind, Record, SearchWrite, WorkspaceSettings};
use crate::store::{Store, load_doc};

/// What `store verify` found.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct VerifyReport {
    pub documents: usize,
    pub changes: usize,
    pub snapshots: usize,
    pub invoices: usize,
    pub issued: usize,
    pub customers: usize,
    pub items: usize,
    /// Every inconsistency found; empty means the store is sound.
    pub problems: Vec<String>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What `store compact` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CompactReport {
    pub documents: usize,
    pub change_rows_folded: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// What `export json` wrote.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExportReport {
    pub invoices: usize,
    pub customers: usize,
    pub items: usize,
}

fn document_ids(conn: &Connection) -> Result<Vec<(DocumentId, DocKind)>> {
    let mut statement = conn.prepare("SELECT id, kind FROM documents ORDER BY id")?;
    let rows = statement.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (id, kind) = row?;
        let id: DocumentId = id.parse().map_err(|_| StoreError::Corrupt {
            path: "documents".into(),
            detail: format!("document id {id:?} is not a UUID"),
        })?;
        let kind = DocKind::parse(&kind)
            .ok_or_else(|| StoreError::Document { id, detail: format!("unknown kind {kind:?}") })?;
        out.push((id, kind));
    }
    Ok(out)
}

fn count(conn: &Connection, sql: &str) -> Result<usize> {
    Ok(conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as usize)
}

fn check_record<R: Record>(
    conn: &Connection,
    id: DocumentId,
    doc: &Automerge,
    problems: &mut Vec<String>,
) -> Option<R> {
    let record: R = match document::read_record(id, doc, None) {
        Ok(record) => record,
        Err(e) => {
            problems.push(e.to_string());
            return None;
        }
    };
    let invalid = record.validate();
    if !invalid.is_empty() {
        problems.push(format!("{} {id} is not valid: {}", R::KIND.as_str(), invalid.to_string().replace('\n', "; ")));
    }
    match record.index_matches(conn) {
        Ok(true) => {}
        Ok(false) => problems.push(format!(
            "the index row of {} {id} does not match its document; run `daftar store rebuild-index`",
            R::KIND.as_str()
        )),
        Err(e) => problems.push(e.to_string()),
    }
    Some(record)
}

fn index_record<R: Record>(conn: &Connection, id: DocumentId, doc: &Automerge) -> Result<()> {
    document::read_record::<R>(id, doc, None)?.index(conn, SearchWrite::Queue)
}

impl Store {
    /// Reads every document in full and checks it, its history, the index and the numbering.
    /// Also checks this device's ZATCA chain (see `check_chain`) and that every invoice's
    /// e-invoice XML hashes as it was signed.
    pub fn verify(&self) -> Result<VerifyReport> {
        let damaged = self.damaged_pages()?;
        if !damaged.is_empty() {
            // Reading on would only fail on the same pages; say what is wrong and stop.
            let mut report = VerifyReport::default();
            report.problems.extend(damaged.into_iter().map(|e| {
                format!("the database file is damaged ({e}); restore it from a backup or recover the workspace from the relay")
            }));
            return Ok(report);
        }
        self.flush_search()?;
        self.read(|conn| {
            let mut report = VerifyReport::default();
            let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
            if integrity != "ok" {
                report.problems.push(format!("SQLite integrity check: {integrity}"));
            }
            report.changes = count(conn, "SELECT count(*) FROM changes")?;
            report.snapshots = count(conn, "SELECT count(*) FROM snapshots")?;
            let mut numbers: HashMap<String, Vec<String>> = HashMap::new();
            let mut settings_seen = 0;
            for (id, kind) in document_ids(conn)? {
                report.documents += 1;
                let loaded = match load_doc(conn, id) {
                    Ok(Some(loaded)) => loaded,
                    Ok(None) => continue,
                    Err(e) => {
                        report.problems.push(e.to_string());
                        continue;
                    }
                };
                let stored_heads: Vec<u8> =
                    conn.query_row("SELECT heads FROM documents WHERE id = ?1", [id.to_string()], |r| r.get(0))?;
                let mut heads = loaded.doc.get_heads();
                heads.sort();
                let mut recorded = document::decode_heads(&stored_heads);
                recorded.sort();
                if heads != recorded {
                    report.problems.push(format!("document {id}: its recorded heads differ from its changes"));
                }
                let problems = &mut report.problems;
                match kind {
                    DocKind::Settings => {
                        settings_seen += 1;
                        check_record::<WorkspaceSettings>(conn, id, &loaded.doc, problems);
                    }
                    DocKind::Membership => {
                        check_record::<crate::Membership>(conn, id, &loaded.doc, problems);
                    }
                    DocKind::Events => {
                        check_record::<crate::events::DeviceEvents>(conn, id, &loaded.doc, problems);
                    }
                    DocKind::Invoice => {
                        report.invoices += 1;
                        let invoice = check_record::<Invoice>(conn, id, &loaded.doc, problems);
                        if let Some(invoice) = invoice.filter(Invoice::is_issued)
                            && let Some(number) = invoice.number.clone()
                        {
                            report.issued += 1;
                            numbers.entry(number.clone()).or_default().push(id.to_string());
                            if let Some(e) = &invoice.einvoice {
                                // The signed XML must still hash to what was signed and chained.
                                match daftar_zatca::invoice_hash(&e.xml) {
                                    Ok(hash) if hash == e.hash => {}
                                    Ok(hash) => problems.push(format!(
                                        "invoice {number}: its e-invoice XML hashes to {hash}, not the {} it was signed with",
                                        e.hash
                                    )),
                                    Err(error) => problems.push(format!("invoice {number}: its e-invoice XML: {error}")),
                                }
                            }
                        }
                    }
                    DocKind::Customer => {
                        report.customers += 1;
                        check_record::<Customer>(conn, id, &loaded.doc, problems);
                    }
                    DocKind::Item => {
                        report.items += 1;
                        check_record::<Item>(conn, id, &loaded.doc, problems);
                    }
                }
            }
            report.problems.extend(check_chain(conn)?);
            if settings_seen != 1 {
                report.problems.push(format!("expected one workspace settings document, found {settings_seen}"));
            }
            for (table, expected) in
                [("invoice_index", report.invoices), ("customer_index", report.customers), ("item_index", report.items)]
            {
                let rows = count(conn, &format!("SELECT count(*) FROM {table}"))?;
                if rows != expected {
                    report.problems.push(format!(
                        "{table} has {rows} rows for {expected} documents; run `daftar store rebuild-index`"
                    ));
                }
            }
            for (number, ids) in &numbers {
                if ids.len() > 1 {
                    report.problems.push(format!(
                        "invoice number {number} is used by {} invoices: {}",
                        ids.len(),
                        ids.join(", ")
                    ));
                }
            }
            // A number given up when the same draft was issued twice at once stays used.
            let void_numbers: Vec<String> = conn
                .prepare("SELECT void_number FROM conflicts WHERE void_number IS NOT NULL")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut counters = conn.prepare("SELECT series, last FROM series_counters")?;
            let counters: Vec<(String, i64)> =
                counters.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
            for (series, last) in counters {
                let Ok(series) = series.parse::<daftar_domain::Series>() else {
                    report.problems.push(format!("series counter {series:?} is not a valid series"));
                    continue;
                };
                let mut used: Vec<u64> =
                    numbers.keys().chain(&void_numbers).filter_map(|n| series.sequence_of(n)).collect();
                used.sort_unstable();
                used.dedup();
                let expected: Vec<u64> = (1..=last as u64).collect();
                if used != expected {
                    let missing: Vec<String> =
                        expected.iter().filter(|n| !used.contains(n)).map(|n| series.number(*n)).collect();
                    let extra: Vec<String> =
                        used.iter().filter(|n| **n > last as u64).map(|n| series.number(*n)).collect();
                    report.problems.push(format!(
                        "series {series} is not gapless up to {}: missing [{}], beyond the counter [{}]",
                        series.number(last as u64),
                        missing.join(", "),
                        extra.join(", ")
                    ));
                }
            }
            Ok(report)
        })
    }

    /// Recreates every index table from the documents. Returns the number of documents indexed.
    pub fn rebuild_index(&mut self) -> Result<usize> {
        self.write(|tx, _, _| {
            tx.execute_batch(
                "DELETE FROM invoice_index; DELETE FROM customer_index; DELETE FROM item_index;
                 DELETE FROM search_queue; INSERT INTO invoice_search (invoice_search) VALUES ('delete-all');",
            )?;
            let ids = document_ids(tx)?;
            for (id, kind) in &ids {
                let Some(loaded) = load_doc(tx, *id)? else {
                    continue;
                };
                match kind {
                    DocKind::Settings | DocKind::Membership | DocKind::Events => {}
                    DocKind::Invoice => index_record::<Invoice>(tx, *id, &loaded.doc)?,
                    DocKind::Customer => index_record::<Customer>(tx, *id, &loaded.doc)?,
                    DocKind::Item => index_record::<Item>(tx, *id, &loaded.doc)?,
                }
            }
            crate::search::move_queue(tx)?;
            Ok(ids.len())
        })
    }

    /// Folds each document's change rows into one snapshot holding its full history. Each batch
    /// is one transaction, so a crash part-way leaves every document either as it was or
    /// compacted, never without its changes.
    pub fn compact(&mut self) -> Result<CompactReport> {
        self.compact_with_progress(|_, _| {})
    }

    /// [`Store::compact`], calling `progress` after each committed batch with the report so far
    /// and the number of documents still to fold: a large store takes a while, and what is
    /// reported has been committed (an interruption keeps it).
    pub fn compact_with_progress(&mut self, mut progress: impl FnMut(&CompactReport, usize)) -> Result<CompactReport> {
        let candidates: Vec<String> = {
            let mut statement = self.conn.prepare("SELECT DISTINCT doc_id FROM changes")?;
            statement.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
        };
        const BATCH: usize = 256;
        let mut report = CompactReport::default();
        for (n, batch) in candidates.chunks(BATCH).enumerate() {
            let (documents, folded, before, after) = self.write(|tx, ctx, _| {
                let (mut documents, mut folded, mut before, mut after) = (0usize, 0usize, 0u64, 0u64);
                for key in batch {
                    let id: DocumentId = key.parse().map_err(|_| StoreError::Corrupt {
                        path: "changes".into(),
                        detail: format!("document id {key:?} is not a UUID"),
                    })?;
                    let Some(loaded) = load_doc(tx, id)? else { continue };
                    let (rows, row_bytes, max_seq): (i64, i64, i64) = tx.query_row(
                        "SELECT count(*), coalesce(sum(length(bytes)), 0), coalesce(max(seq), 0) FROM changes WHERE doc_id = ?1",
                        [key],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )?;
                    let old_snapshot: i64 = tx.query_row(
                        "SELECT coalesce(sum(length(bytes)), 0) FROM snapshots WHERE doc_id = ?1",
                        [key],
                        |r| r.get(0),
                    )?;
                    let bytes = loaded.doc.save();
                    let heads = document::encode_heads(&loaded.doc.get_heads());
                    let change_count = loaded.doc.get_changes(&[]).len() as i64;
                    tx.execute(
                        "INSERT OR REPLACE INTO snapshots (doc_id, bytes, heads, change_count, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![key, bytes, heads, change_count, ctx.now.timestamp_millis()],
                    )?;
                    // Rows a relay has not acknowledged yet stay: they are the outbox.
                    tx.execute(
                        "DELETE FROM changes WHERE doc_id = ?1 AND seq <= ?2
                             AND seq <= (SELECT coalesce(min(push_cursor), ?2) FROM relays)",
                        params![key, max_seq],
                    )?;
                    documents += 1;
                    folded += rows as usize;
                    before += (row_bytes + old_snapshot) as u64;
                    after += bytes.len() as u64;
                }
                Ok((documents, folded, before, after))
            })?;
            report.documents += documents;
            report.change_rows_folded += folded;
            report.bytes_before += before;
            report.bytes_after += after;
            progress(&report, candidates.len().saturating_sub((n + 1) * BATCH));
        }
        Ok(report)
    }

    /// Writes every record, deleted ones included, as pretty JSON files under `dir`
    /// (`settings.json`, `invoices/ID.json` with computed totals, `customers/`, `items/`).
    pub fn export_json(&self, dir: &Path) -> Result<ExportReport> {
        let io = |action, path: &Path, source| StoreError::Io { action, path: path.to_owned(), source };
        if dir.exists() && std::fs::read_dir(dir).map_err(|e| io("read", dir, e))?.next().is_some() {
            return Err(StoreError::Io {
                action: "export into",
                path: dir.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "the folder is not empty"),
            });
        }
        for sub in ["invoices", "customers", "items"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| io("create", &dir.join(sub), e))?;
        }
        self.read(|conn| {
            let mut report = ExportReport::default();
            let write = |path: &Path, value: &serde_json::Value| {
                let text = serde_json::to_string_pretty(value).expect("JSON serialises");
                std::fs::write(path, text).map_err(|e| io("write", path, e))
            };
            for (id, kind) in document_ids(conn)? {
                let Some(loaded) = load_doc(conn, id)? else {
                    continue;
                };
                let mut json = document::to_json(&loaded.doc, None);
                let folder = match kind {
                    DocKind::Settings => {
                        write(&dir.join("settings.json"), &json)?;
                        continue;
                    }
                    DocKind::Membership => {
                        write(&dir.join("membership.json"), &json)?;
                        continue;
                    }
                    // The audit log's events are not part of the records export.
                    DocKind::Events => continue,
                    DocKind::Invoice => {
                        let invoice: Invoice = document::read_record(id, &loaded.doc, None)?;
                        if let (Ok(totals), Some(map)) = (daftar_domain::compute_totals(&invoice), json.as_object_mut())
                        {
                            map.insert("totals".into(), serde_json::to_value(totals).expect("totals serialise"));
                        }
                        report.invoices += 1;
                        "invoices"
                    }
                    DocKind::Customer => {
                        report.customers += 1;
                        "customers"
                    }
                    DocKind::Item => {
                        report.items += 1;
                        "items"
                    }
                };
                write(&dir.join(folder).join(format!("{id}.json")), &json)?;
            }
            Ok(report)
        })
    }

    /// Stores many new records in one transaction: all of them or, if any is invalid, none.
    /// Documents are built on every core; problems are reported by position (1-based).
    pub fn create_many<R: Record + Sync>(&mut self, records: &[R], message: &str) -> Result<()> {
        self.permit(crate::store::editing(R::KIND))?;
        let mut problems = daftar_domain::Problems::new();
        for (index, record) in records.iter().enumerate() {
            for problem in record.validate().iter() {
                problems.push(
                    format!("[{}].{}", index + 1, problem.field),
                    format!("record {}: {}", index + 1, problem.message),
                );
            }
        }
        problems.into_result()?;
        let ctx = self.ctx();
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).max(1);
        let chunk = records.len().div_ceil(threads).max(1);
        let built: Vec<(DocumentId, Automerge)> = std::thread::scope(|scope| {
            let workers: Vec<_> = records
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|record| {
                                crate::store::build_document(record, message, ctx)
                                    .map(|doc| (record.document_id(), doc))
                            })
                            .collect::<Result<Vec<_>>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("document builder panicked"))
                .collect::<Result<Vec<Vec<_>>>>()
                .map(|v| v.into_iter().flatten().collect())
        })?;
        self.write(|tx, ctx, _| {
            for ((id, doc), record) in built.iter().zip(records) {
                crate::store::insert_document(tx, *id, R::KIND, doc, ctx)?;
                record.index(tx, SearchWrite::Queue)?;
            }
            crate::search::move_queue(tx)?;
            Ok(())
        })?;
        Ok(())
    }
}

/// This device's e-invoice chain, from the e-invoices it keeps verbatim: counter values 1..n
/// without gaps, each PIH the previous hash, every XML hashing as signed, the head the last.
fn check_chain(conn: &rusqlite::Connection) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut statement = conn.prepare("SELECT number, icv, hash, pih, xml FROM zatca_submissions ORDER BY icv")?;
    let rows = statement.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    let mut previous = daftar_zatca::FIRST_PIH.to_owned();
    let mut count = 0i64;
    for row in rows {
        let (number, icv, hash, pih, xml) = row?;
        count += 1;
        if icv != count {
            problems.push(format!(
                "e-invoice {number} has counter value {icv} where {count} comes next: the chain has a gap"
            ));
        }
        if pih != previous {
            problems.push(format!("e-invoice {number} (ICV {icv}) is not chained to the previous e-invoice's hash"));
        }
        match daftar_zatca::invoice_hash(&xml) {
            Ok(h) if h == hash => {}
            Ok(h) => problems
                .push(format!("e-invoice {number} (ICV {icv}) hashes to {h}, not the {hash} it was signed with")),
            Err(e) => problems.push(format!("e-invoice {number} (ICV {icv}): {e}")),
        }
        previous = hash;
    }
    let head: Option<(i64, String)> = conn
        .query_row("SELECT icv, pih FROM zatca_chain WHERE unit = 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (head_icv, head_pih) = head.unwrap_or((0, daftar_zatca::FIRST_PIH.to_owned()));
    if head_icv != count || head_pih != previous {
        problems.push(format!(
            "the e-invoice chain head (ICV {head_icv}) does not match the last e-invoice issued here (ICV {count})"
        ));
    }
    Ok(problems)
}

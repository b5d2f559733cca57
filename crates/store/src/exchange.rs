//! The store's side of sync: relays, the outbox of local changes, and applying changes that
//! arrived from other devices. No network here: the CLI (or the app) moves the bytes.

use automerge::Change;
use daftar_domain::{Customer, DeviceId, DocumentId, Invoice, Item};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::error::{Result, StoreError};
use crate::records::{DocKind, Record, SearchWrite};
use crate::store::{Ctx, DocCache, Store, insert_document_row, load_doc};
use crate::{conflicts, document};

impl DocKind {
    /// The kind's number in envelopes.
    pub fn code(self) -> u8 {
        match self {
            DocKind::Settings => 0,
            DocKind::Invoice => 1,
            DocKind::Customer => 2,
            DocKind::Item => 3,
            DocKind::Membership => 4,
            DocKind::Events => 5,
        }
    }

    pub fn from_code(code: u8) -> Option<DocKind> {
        match code {
            0 => Some(DocKind::Settings),
            1 => Some(DocKind::Invoice),
            2 => Some(DocKind::Customer),
            3 => Some(DocKind::Item),
            4 => Some(DocKind::Membership),
            5 => Some(DocKind::Events),
            _ => None,
        }
    }
}

/// A relay this device syncs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct RelayStatus {
    pub url: String,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub push_cursor: i64,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub pull_cursor: i64,
    /// Local changes not yet acknowledged by this relay.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub pending: i64,
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub last_sync: Option<i64>,
    pub last_error: Option<String>,
    /// Whether the last attempt reached the relay (false before the first sync).
    pub online: bool,
    /// Envelopes from this relay that were refused and never applied.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub refused: i64,
}

/// An envelope a relay served that was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct RefusedEnvelope {
    pub relay: String,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub seq: i64,
    pub envelope_id: String,
    pub reason: String,
    /// Milliseconds since the epoch.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub at: i64,
}

/// One local change waiting for a relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingChange {
    pub seq: i64,
    pub document: DocumentId,
    pub kind: DocKind,
    pub hash: [u8; 32],
    pub bytes: Vec<u8>,
}

impl Store {
    /// Adds a relay (idempotent).
    pub fn add_relay(&mut self, url: &str) -> Result<()> {
        self.write(|tx, ctx, _| {
            tx.execute(
                "INSERT OR IGNORE INTO relays (url, added_at) VALUES (?1, ?2)",
                params![url, ctx.now.timestamp_millis()],
            )?;
            Ok(())
        })
    }

    pub fn remove_relay(&mut self, url: &str) -> Result<bool> {
        self.write(|tx, _, _| Ok(tx.execute("DELETE FROM relays WHERE url = ?1", [url])? == 1))
    }

    pub fn relays(&self) -> Result<Vec<RelayStatus>> {
        let device = self.info.device_id.to_string();
        let mut statement = self.conn.prepare(
            "SELECT url, push_cursor, pull_cursor, last_sync, last_error,
                    (SELECT count(*) FROM changes WHERE device = ?1 AND seq > relays.push_cursor),
                    (SELECT count(*) FROM refused_envelopes WHERE relay = relays.url)
             FROM relays ORDER BY added_at, url",
        )?;
        let rows = statement.query_map([device], |r| {
            Ok(RelayStatus {
                url: r.get(0)?,
                push_cursor: r.get(1)?,
                pull_cursor: r.get(2)?,
                last_sync: r.get(3)?,
                last_error: r.get(4)?,
                pending: r.get(5)?,
                online: r.get::<_, Option<i64>>(3)?.is_some() && r.get::<_, Option<String>>(4)?.is_none(),
                refused: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// A number that changes whenever another connection (another process, or the app's other
    /// thread) commits to this database: a cheap way for a syncing loop to notice new local
    /// changes (SQLite's `PRAGMA data_version`).
    pub fn data_version(&self) -> Result<i64> {
        Ok(self.conn.query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }

    /// This device's own changes the relay at `url` has not acknowledged, oldest first.
    pub fn outbox(&self, url: &str, limit: u32) -> Result<Vec<OutgoingChange>> {
        let cursor: i64 = self
            .conn
            .query_row("SELECT push_cursor FROM relays WHERE url = ?1", [url], |r| r.get(0))
            .optional()?
            .ok_or_else(|| StoreError::NotFound { kind: "relay", id: url.to_owned() })?;
        let mut statement = self.conn.prepare_cached(
            "SELECT c.seq, c.doc_id, d.kind, c.hash, c.bytes FROM changes c JOIN documents d ON d.id = c.doc_id
             WHERE c.device = ?1 AND c.seq > ?2 ORDER BY c.seq LIMIT ?3",
        )?;
        let rows = statement.query_map(params![self.info.device_id.to_string(), cursor, limit], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Vec<u8>>(3)?,
                r.get(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, id, kind, hash, bytes) = row?;
            let document: DocumentId = id.parse().map_err(|_| StoreError::Corrupt {
                path: self.info.data_dir.clone(),
                detail: format!("change row {seq} names document {id:?}"),
            })?;
            let kind =
                DocKind::parse(&kind).ok_or_else(|| StoreError::Document { id: document, detail: kind.clone() })?;
            let hash: [u8; 32] =
                hash.try_into().map_err(|_| StoreError::Document { id: document, detail: "bad change hash".into() })?;
            out.push(OutgoingChange { seq, document, kind, hash, bytes });
        }
        Ok(out)
    }

    /// Records that the relay at `url` acknowledged every local change up to `seq`.
    pub fn mark_pushed(&mut self, url: &str, seq: i64) -> Result<()> {
        self.mark_pushed_with_seals(url, seq, &[])
    }

    /// [`Store::mark_pushed`], keeping in the same transaction the seal proofs of the changes
    /// just pushed (so that a snapshot made here can show this device sealed them; a proof lost
    /// to a crash between the two is made again, as sealing is deterministic).
    pub fn mark_pushed_with_seals(
        &mut self,
        url: &str,
        seq: i64,
        seals: &[(DocumentId, [u8; 32], [u8; daftar_sync::PROOF_LEN])],
    ) -> Result<()> {
        self.write(|tx, ctx, _| {
            tx.execute("UPDATE relays SET push_cursor = max(push_cursor, ?2) WHERE url = ?1", params![url, seq])?;
            for (document, hash, proof) in seals {
                keep_seal(tx, *document, hash, ctx.device, proof)?;
            }
            Ok(())
        })
    }

    /// Keeps the envelopes of a pulled page that were refused, as evidence (`refused_envelopes`).
    pub fn record_refused(&mut self, url: &str, refused: &[(i64, String, String)]) -> Result<()> {
        if refused.is_empty() {
            return Ok(());
        }
        self.write(|tx, ctx, _| {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO refused_envelopes (relay, seq, envelope_id, reason, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (seq, id, reason) in refused {
                insert.execute(params![url, seq, id, reason, ctx.now.timestamp_millis()])?;
            }
            Ok(())
        })
    }

    /// Every refused envelope, newest first.
    pub fn refused_envelopes(&self) -> Result<Vec<RefusedEnvelope>> {
        self.read(|conn| {
            let mut statement = conn.prepare(
                "SELECT relay, seq, envelope_id, reason, at FROM refused_envelopes ORDER BY at DESC, relay, seq DESC",
            )?;
            let rows = statement.query_map([], |r| {
                Ok(RefusedEnvelope {
                    relay: r.get(0)?,
                    seq: r.get(1)?,
                    envelope_id: r.get(2)?,
                    reason: r.get(3)?,
                    at: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Records a sync round's outcome for `sync status`.
    pub fn record_sync(&mut self, url: &str, pull_cursor: Option<i64>, error: Option<&str>) -> Result<()> {
        self.write(|tx, ctx, _| {
            match error {
                None => tx.execute(
                    "UPDATE relays SET last_sync = ?2, last_error = NULL, pull_cursor = max(pull_cursor, coalesce(?3, pull_cursor))
                     WHERE url = ?1",
                    params![url, ctx.now.timestamp_millis(), pull_cursor],
                )?,
                Some(message) => tx.execute(
                    "UPDATE relays SET last_error = ?2, pull_cursor = max(pull_cursor, coalesce(?3, pull_cursor))
                     WHERE url = ?1",
                    params![url, message, pull_cursor],
                )?,
            };
            Ok(())
        })
    }

    /// Applies one change that arrived from `sender`. Applying a change twice is harmless; a
    /// change whose dependencies have not arrived yet is kept and takes effect when they do.
    /// Returns whether the change was new here.
    pub fn apply_remote(
        &mut self,
        document: DocumentId,
        kind: DocKind,
        sender: DeviceId,
        bytes: &[u8],
    ) -> Result<bool> {
        self.write(|tx, ctx, cache| {
            let incoming = IncomingChange { document, kind, sender, bytes, role: None, sender_key: None, proof: None };
            apply_one(tx, ctx, cache, &incoming, Judging::Trusted)
        })
    }

    /// Applies many received changes in one durable transaction (a pulled page). Each change is
    /// applied or refused on its own: a refused one (it does not decode, or names a document of
    /// another kind) leaves no trace and does not hold up the others. Returns, per change,
    /// whether it was new here or why it was refused; a database failure fails the whole batch.
    pub fn apply_remote_many(&mut self, changes: &[IncomingChange<'_>]) -> Result<Vec<Result<bool>>> {
        let workspace = self.info.workspace_id;
        let outcomes = self.write(|tx, ctx, cache| {
            let mut judge = crate::membership::Judge::new(workspace);
            let mut outcomes = Vec::with_capacity(changes.len());
            for change in changes {
                tx.execute_batch("SAVEPOINT incoming")?;
                let outcome = apply_one(tx, ctx, cache, change, Judging::Log(&mut judge));
                if change.kind == DocKind::Membership {
                    // Later changes are judged by the membership as this one left it.
                    judge.forget();
                }
                match outcome {
                    Ok(new) => {
                        tx.execute_batch("RELEASE incoming")?;
                        outcomes.push(Ok(new));
                    }
                    Err(StoreError::Sqlite(e)) => return Err(StoreError::Sqlite(e)),
                    Err(refused) => {
                        tx.execute_batch("ROLLBACK TO incoming; RELEASE incoming")?;
                        outcomes.push(Err(refused));
                    }
                }
            }
            Ok(outcomes)
        })?;
        // An owner or admin may have changed this device's role.
        if changes.iter().any(|c| c.kind == DocKind::Membership) {
            self.refresh_role()?;
        }
        Ok(outcomes)
    }
}

/// A change received from another device, opened and verified.
#[derive(Debug, Clone, Copy)]
pub struct IncomingChange<'a> {
    pub document: DocumentId,
    pub kind: DocKind,
    pub sender: DeviceId,
    pub bytes: &'a [u8],
    /// The sender's role, to judge the change by (see `quarantine`); `None` takes it as it
    /// is (a backup or snapshot already in this workspace).
    pub role: Option<daftar_domain::Role>,
    /// The key the envelope's signature was checked with: it must be the one the membership
    /// document gives the sender.
    pub sender_key: Option<[u8; 32]>,
    /// The envelope's seal proof ([`daftar_sync::SealProof`]), kept so that snapshots made
    /// from this store can show who sealed the change.
    pub proof: Option<&'a [u8; daftar_sync::PROOF_LEN]>,
}

/// How a received change is judged before it is applied.
pub(crate) enum Judging<'j> {
    /// Taken as it is (a backup of this workspace).
    Trusted,
    /// At its place in the relay's log, by the membership document as it stands there.
    Log(&'j mut crate::membership::Judge),
    /// From a snapshot, whose seal proof named its sender: by the highest role the sender ever
    /// held (see [`crate::membership::RolesEver`]).
    Snapshot(&'j crate::membership::RolesEver),
}

/// Keeps a change's seal proof (the first one kept stays: any proof of it is as good).
pub(crate) fn keep_seal(
    tx: &rusqlite::Connection,
    document: DocumentId,
    hash: &[u8; 32],
    device: DeviceId,
    proof: &[u8; daftar_sync::PROOF_LEN],
) -> Result<()> {
    tx.prepare_cached("INSERT OR IGNORE INTO seals (doc_id, hash, device, proof) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![document.to_string(), hash.as_slice(), device.to_string(), proof.as_slice()])?;
    Ok(())
}

pub(crate) fn apply_one(
    tx: &rusqlite::Connection,
    ctx: Ctx,
    cache: &DocCache,
    incoming: &IncomingChange<'_>,
    judging: Judging<'_>,
) -> Result<bool> {
    let IncomingChange { document, kind, sender, bytes, role, sender_key, proof } = *incoming;
    // Measured before Automerge inflates it: a compression bomb is refused like any change
    // that does not decode, and the pull goes on past it.
    crate::inflation::check_received(document, "a received change", bytes, crate::inflation::MAX_INFLATED_BYTES)?;
    let change = Change::from_bytes(bytes.to_vec()).map_err(|e| StoreError::Document {
        id: document,
        detail: format!("a received change does not decode: {e}"),
    })?;
    let key = document.to_string();
    let known: Option<String> =
        tx.prepare_cached("SELECT kind FROM documents WHERE id = ?1")?.query_row([&key], |r| r.get(0)).optional()?;
    if let Some(existing) = known.as_deref().filter(|k| *k != kind.as_str()) {
        return Err(StoreError::Document {
            id: document,
            detail: format!("a received change calls this {} a {}", existing, kind.as_str()),
        });
    }
    // A change this device already has (its own, coming back from the relay) needs no judging.
    let stored = tx
        .prepare_cached("SELECT 1 FROM changes WHERE doc_id = ?1 AND hash = ?2")?
        .query_row(params![key, change.hash().0.as_slice()], |_| Ok(()))
        .optional()?
        .is_some();
    if stored {
        if let Some(proof) = proof {
            keep_seal(tx, document, &change.hash().0, sender, proof)?;
        }
        return Ok(false);
    }
    if let Some(relay_role) = role {
        // The membership document decides, once there is one; before, the relay's word.
        use crate::membership::Standing;
        let standing = match judging {
            Judging::Trusted => None,
            Judging::Log(judge) => {
                let membership = judge.membership(tx, cache)?;
                Some(crate::membership::standing(membership, sender, sender_key.as_ref()))
            }
            Judging::Snapshot(roles) => Some(roles.standing(sender, sender_key.as_ref())),
        };
        if let Some(standing) = standing {
            let role = match &standing {
                Standing::Unknown => Ok(relay_role),
                Standing::Member(role) => Ok(*role),
                Standing::Refused(reason) => Err(reason.as_str()),
            };
            if let Some(reason) = crate::quarantine::judge(tx, document, kind, sender, role, &change)? {
                crate::quarantine::keep(tx, ctx, incoming, role.ok(), &change, &reason)?;
                return Ok(false);
            }
        }
    }
    if known.is_none() {
        insert_document_row(tx, document, kind, &[], ctx)?;
    }
    let inserted = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO changes (doc_id, hash, bytes, device, time, message)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            key,
            change.hash().0.as_slice(),
            bytes,
            sender.to_string(),
            change.timestamp(),
            change.message()
        ])?;
    if inserted == 0 {
        return Ok(false);
    }
    if let Some(proof) = proof {
        keep_seal(tx, document, &change.hash().0, sender, proof)?;
    }
    // The cached document (if current) plus this change, instead of reloading every row.
    let mut loaded = match cache.take(tx, document)? {
        Some(mut loaded) if known.is_some() => {
            loaded
                .doc
                .apply_changes([change])
                .map_err(|e| StoreError::Document { id: document, detail: format!("a change does not apply: {e}") })?;
            loaded
        }
        _ => load_doc(tx, document)?.ok_or_else(|| StoreError::NotFound { kind: "document", id: key.clone() })?,
    };
    if kind == DocKind::Invoice {
        conflicts::keep_issued(tx, document, &mut loaded.doc, ctx)?;
    }
    tx.prepare_cached("UPDATE documents SET heads = ?2 WHERE id = ?1")?
        .execute(params![key, document::encode_heads(&loaded.doc.get_heads())])?;
    // Until every dependency has arrived the document may not hydrate yet; its index
    // row follows when it does.
    let indexed = match kind {
        DocKind::Settings | DocKind::Membership | DocKind::Events => Ok(()),
        DocKind::Invoice => reindex::<Invoice>(tx, document, &loaded.doc),
        DocKind::Customer => reindex::<Customer>(tx, document, &loaded.doc),
        DocKind::Item => reindex::<Item>(tx, document, &loaded.doc),
    };
    if let Err(StoreError::Sqlite(e)) = indexed {
        return Err(StoreError::Sqlite(e));
    }
    cache.put(document, loaded.doc);
    Ok(true)
}

fn reindex<R: Record>(conn: &rusqlite::Connection, id: DocumentId, doc: &automerge::Automerge) -> Result<()> {
    let record: R = document::read_record(id, doc, None)?;
    record.index(conn, SearchWrite::Queue)
}

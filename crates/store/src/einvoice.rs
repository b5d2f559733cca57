//! ZATCA e-invoicing on this device, which is its own EGS unit: the certificate it stamps
//! with, its invoice counter and hash chain, and its queue of e-invoices to clear or report.
//!
//! Issuing stamps the invoice in the issuing transaction ([`stamp_issued`]): the counter, the
//! chain head, the signed XML (written into the invoice's document, so it syncs) and the
//! queue row commit together or not at all, so a crash never leaves a counter without its
//! invoice or two invoices with one PIH.

use chrono::{DateTime, Utc};
use daftar_domain::{EInvoice, Invoice, InvoiceKind, Problems, SellerProfile, compute_totals};
use daftar_zatca::cert::{Certificate, self_signed};
use daftar_zatca::ubl::{Issue, Subtype};
use k256::ecdsa::SigningKey;
use rusqlite::{OptionalExtension, Transaction, params};
use serde::Serialize;

use crate::error::{Result, StoreError};
use crate::store::load_record;
use crate::store::{DocCache, Store};

/// What this unit stamps with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EgsStage {
    /// Not onboarded: a self-signed test certificate; e-invoices are not reportable.
    SelfSigned,
    /// Onboarding in progress: ZATCA's compliance certificate (for the compliance checks).
    Compliance,
    /// Onboarded: ZATCA's production certificate (CSID); e-invoices are cleared or reported.
    Production,
}

impl EgsStage {
    fn parse(text: &str) -> Option<EgsStage> {
        match text {
            "self_signed" => Some(EgsStage::SelfSigned),
            "compliance" => Some(EgsStage::Compliance),
            "production" => Some(EgsStage::Production),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EgsStage::SelfSigned => "self_signed",
            EgsStage::Compliance => "compliance",
            EgsStage::Production => "production",
        }
    }
}

/// One e-invoice in this device's submission queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Submission {
    pub invoice_id: String,
    pub number: String,
    pub icv: u64,
    pub subtype: String,
    /// `not_reportable`, `pending`, `reported`, `cleared` or `rejected`.
    pub status: String,
    pub issued_at: DateTime<Utc>,
    pub attempts: u32,
    pub last_attempt: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// ZATCA's answer as it sent it (validation results with its messages and warnings).
    pub response: Option<serde_json::Value>,
}

/// A CSID as this unit keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsidRecord {
    /// The certificate (base64 of DER).
    pub certificate: String,
    /// `binarySecurityToken`.
    pub token: String,
    pub secret: String,
    pub request_id: String,
    pub environment: String,
    pub api_url: String,
}

/// An e-invoice due for submission.
#[derive(Debug, Clone)]
pub struct Due {
    pub submission: Submission,
    pub uuid: String,
    pub hash: String,
    pub xml: String,
}

/// What a submission attempt produced.
#[derive(Debug, Clone, Default)]
pub struct SubmissionResult {
    /// The new status (`reported`, `cleared`, `rejected`); `None` keeps it pending.
    pub status: Option<String>,
    pub error: Option<String>,
    pub response: Option<serde_json::Value>,
    pub cleared_xml: Option<String>,
}

/// This unit's e-invoicing state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZatcaStatus {
    pub stage: EgsStage,
    pub environment: Option<String>,
    pub certificate_subject: Option<String>,
    pub certificate_issuer: Option<String>,
    pub certificate_expires: Option<DateTime<Utc>>,
    /// The last invoice counter value used (0 before the first e-invoice).
    pub icv: u64,
    /// The hash the next e-invoice will carry as its PIH.
    pub next_pih: String,
    pub not_reportable: u64,
    pub pending: u64,
    pub reported: u64,
    pub cleared: u64,
    pub rejected: u64,
    /// Pending e-invoices older than ZATCA's 24-hour reporting window.
    pub overdue: u64,
}

/// The unit's signing key: derived from the device's signing seed (kept in the OS keyring or
/// the key file), so it needs no storage of its own and is never written to the database.
pub(crate) fn egs_key(seed: &daftar_keys::Secret<32>) -> SigningKey {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, seed.expose_secret_bytes());
    for counter in 0u8.. {
        let tag = ring::hmac::sign(&key, &[b"daftar zatca egs key v1".as_slice(), &[counter]].concat());
        if let Ok(signing) = SigningKey::from_slice(tag.as_ref()) {
            return signing;
        }
    }
    unreachable!("an HMAC output is a valid secp256k1 scalar with overwhelming probability")
}

fn egs_value(tx: &rusqlite::Connection, key: &str) -> Result<Option<String>> {
    Ok(tx.query_row("SELECT value FROM zatca_egs WHERE key = ?1", [key], |r| r.get(0)).optional()?)
}

pub(crate) fn set_egs_value(tx: &rusqlite::Connection, key: &str, value: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO zatca_egs (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

fn zatca_error(detail: impl std::fmt::Display) -> StoreError {
    StoreError::Zatca(detail.to_string())
}

/// The certificate this unit stamps with, making the self-signed one on first use.
fn certificate(
    tx: &rusqlite::Connection,
    key: &SigningKey,
    seller: &SellerProfile,
    now: DateTime<Utc>,
) -> Result<(Certificate, EgsStage)> {
    let stage = egs_value(tx, "stage")?.and_then(|s| EgsStage::parse(&s)).unwrap_or(EgsStage::SelfSigned);
    if let Some(text) = egs_value(tx, "certificate")? {
        let certificate = Certificate::from_base64(&text).map_err(zatca_error)?;
        return Ok((certificate, stage));
    }
    let certificate = self_signed(key, &seller.name, &seller.vat_number, now).map_err(zatca_error)?;
    set_egs_value(tx, "certificate", &certificate.base64())?;
    set_egs_value(tx, "stage", EgsStage::SelfSigned.as_str())?;
    Ok((certificate, EgsStage::SelfSigned))
}

/// What ZATCA requires of the seller before its e-invoices can be reported: checked at issue
/// once the unit is onboarded (and by onboarding itself).
pub fn seller_rules(seller: &SellerProfile) -> Problems {
    let mut problems = Problems::new();
    if seller.cr_number.trim().is_empty() {
        problems.push_rule(
            "BR-KSA-08",
            "seller.cr_number",
            "the seller needs its commercial registration number (daftar seller edit --cr-number ...)",
        );
    }
    for p in seller.validate_for_issue().iter() {
        if p.field.starts_with("address.") {
            problems.push_rule("BR-KSA-09", format!("seller.{}", p.field), &p.message);
        } else {
            problems.push(format!("seller.{}", p.field), p.message.clone());
        }
    }
    problems
}

/// The subtype of an invoice: its own for invoices; a note's original's (standard when the
/// original is not here and the buyer has a VAT number).
fn subtype(tx: &Transaction<'_>, cache: &DocCache, invoice: &Invoice) -> Subtype {
    let original = invoice.original.as_ref().and_then(|o| load_record::<Invoice>(tx, cache, o.invoice_id.into()).ok());
    let from_original = original.map(|(_, o)| match o.einvoice.as_ref().map(|e| e.subtype.as_str()) {
        Some("simplified") => Subtype::Simplified,
        Some(_) => Subtype::Standard,
        None => Subtype::of(o.kind, None),
    });
    let buyer_has_vat = invoice.customer.as_ref().and_then(|c| c.vat_number.as_deref()).is_some_and(|v| !v.is_empty());
    let fallback = if buyer_has_vat { Subtype::Standard } else { Subtype::Simplified };
    match invoice.kind {
        InvoiceKind::Standard | InvoiceKind::Simplified => Subtype::of(invoice.kind, None),
        _ => from_original.unwrap_or(fallback),
    }
}

/// Stamps an invoice that was just issued in `tx`: advances the chain, writes the e-invoice
/// into the invoice and queues it for submission.
pub(crate) fn stamp_issued(
    tx: &Transaction<'_>,
    cache: &DocCache,
    invoice: &mut Invoice,
    seller: &SellerProfile,
    key: &SigningKey,
    now: DateTime<Utc>,
) -> Result<()> {
    let (certificate, stage) = certificate(tx, key, seller, now)?;
    if stage == EgsStage::Production {
        seller_rules(seller).into_result().map_err(StoreError::NotIssuable)?;
    }
    let totals = compute_totals(invoice).map_err(|e| {
        StoreError::Invalid({
            let mut p = Problems::new();
            p.push("lines", e.to_string());
            p
        })
    })?;
    let (icv, pih): (u64, String) = tx
        .query_row("SELECT icv, pih FROM zatca_chain WHERE unit = 1", [], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
        })
        .optional()?
        .unwrap_or((0, daftar_zatca::FIRST_PIH.to_owned()));
    let icv = icv + 1;
    let subtype = subtype(tx, cache, invoice);
    let issue = Issue { invoice, seller, totals: &totals, subtype, icv, pih: &pih };
    let stamped = daftar_zatca::ubl::stamp(&issue, key, &certificate, now).map_err(zatca_error)?;
    tx.execute(
        "INSERT INTO zatca_chain (unit, icv, pih) VALUES (1, ?1, ?2)
         ON CONFLICT (unit) DO UPDATE SET icv = excluded.icv, pih = excluded.pih",
        params![icv as i64, stamped.hash],
    )?;
    let status = if stage == EgsStage::Production { "pending" } else { "not_reportable" };
    tx.execute(
        "INSERT INTO zatca_submissions (invoice_id, number, icv, subtype, status, issued_at, uuid, hash, pih, xml)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            invoice.id.to_string(),
            invoice.number.clone().unwrap_or_default(),
            icv as i64,
            subtype.as_str(),
            status,
            now.timestamp_millis(),
            invoice.id.as_uuid().to_string(),
            stamped.hash,
            pih,
            stamped.xml
        ],
    )?;
    invoice.einvoice = Some(EInvoice {
        icv,
        hash: stamped.hash,
        pih,
        qr: stamped.qr,
        subtype: subtype.as_str().to_owned(),
        self_signed: certificate.is_self_signed(),
        xml: stamped.xml,
    });
    Ok(())
}

fn submission(row: &rusqlite::Row<'_>) -> rusqlite::Result<Submission> {
    let millis = |v: Option<i64>| v.and_then(DateTime::from_timestamp_millis);
    let response: Option<String> = row.get(9)?;
    Ok(Submission {
        invoice_id: row.get(0)?,
        number: row.get(1)?,
        icv: row.get::<_, i64>(2)? as u64,
        subtype: row.get(3)?,
        status: row.get(4)?,
        issued_at: millis(Some(row.get(5)?)).unwrap_or_default(),
        attempts: row.get::<_, i64>(6)? as u32,
        last_attempt: millis(row.get(7)?),
        last_error: row.get(8)?,
        response: response.and_then(|r| serde_json::from_str(&r).ok()),
    })
}

const SUBMISSION_COLUMNS: &str =
    "invoice_id, number, icv, subtype, status, issued_at, attempts, last_attempt, last_error, response";

impl Store {
    /// This unit's signing key.
    pub fn egs_key(&self) -> Result<SigningKey> {
        if let Some(key) = self.egs.get() {
            return Ok(key.clone());
        }
        let key = egs_key(&self.secret(crate::store::SIGNING_SEED)?);
        let _ = self.egs.set(key.clone());
        Ok(key)
    }

    /// This unit's e-invoicing state.
    pub fn zatca_status(&self) -> Result<ZatcaStatus> {
        let conn = &self.conn;
        let stage = egs_value(conn, "stage")?.and_then(|s| EgsStage::parse(&s)).unwrap_or(EgsStage::SelfSigned);
        let certificate = egs_value(conn, "certificate")?.and_then(|c| Certificate::from_base64(&c).ok());
        let (icv, next_pih): (u64, String) = conn
            .query_row("SELECT icv, pih FROM zatca_chain WHERE unit = 1", [], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
            })
            .optional()?
            .unwrap_or((0, daftar_zatca::FIRST_PIH.to_owned()));
        let count = |status: &str| -> Result<u64> {
            Ok(conn.query_row("SELECT count(*) FROM zatca_submissions WHERE status = ?1", [status], |r| {
                r.get::<_, i64>(0)
            })? as u64)
        };
        let day_ago = (self.clock.now() - chrono::Duration::hours(24)).timestamp_millis();
        let overdue: i64 = conn.query_row(
            "SELECT count(*) FROM zatca_submissions WHERE status = 'pending' AND issued_at < ?1",
            [day_ago],
            |r| r.get(0),
        )?;
        Ok(ZatcaStatus {
            stage,
            environment: egs_value(conn, "environment")?,
            certificate_subject: certificate.as_ref().map(Certificate::subject),
            certificate_issuer: certificate.as_ref().map(Certificate::issuer),
            certificate_expires: certificate.as_ref().map(Certificate::not_after),
            icv,
            next_pih,
            not_reportable: count("not_reportable")?,
            pending: count("pending")?,
            reported: count("reported")?,
            cleared: count("cleared")?,
            rejected: count("rejected")?,
            overdue: overdue as u64,
        })
    }

    /// Records a CSID ZATCA issued: the certificate this unit stamps with from now on, and
    /// the credentials that authenticate it (kept in the encrypted database; the private key
    /// never leaves the keyring-derived [`Store::egs_key`]).
    pub fn zatca_set_csid(&mut self, stage: EgsStage, csid: &CsidRecord) -> Result<()> {
        let certificate = Certificate::from_base64(&csid.certificate).map_err(zatca_error)?;
        if certificate.public_key_der() != self.egs_certificate_key()? {
            return Err(zatca_error("the certificate ZATCA returned is not for this unit's key; nothing was changed"));
        }
        self.write(|tx, _, _| {
            let prefix = stage.as_str();
            set_egs_value(tx, &format!("{prefix}_token"), &csid.token)?;
            set_egs_value(tx, &format!("{prefix}_secret"), &csid.secret)?;
            set_egs_value(tx, &format!("{prefix}_request_id"), &csid.request_id)?;
            set_egs_value(tx, "environment", &csid.environment)?;
            set_egs_value(tx, "api_url", &csid.api_url)?;
            if stage == EgsStage::Production {
                set_egs_value(tx, "certificate", &csid.certificate)?;
                set_egs_value(tx, "stage", stage.as_str())?;
            }
            Ok(())
        })
    }

    /// The public key of this unit's signing key, as certificates carry it.
    fn egs_certificate_key(&self) -> Result<Vec<u8>> {
        use k256::pkcs8::EncodePublicKey;
        let key = self.egs_key()?;
        Ok(key.verifying_key().to_public_key_der().map_err(zatca_error)?.as_bytes().to_vec())
    }

    /// The credentials of a stage's CSID, and the API they were issued by.
    pub fn zatca_csid(&self, stage: EgsStage) -> Result<Option<CsidRecord>> {
        let prefix = stage.as_str();
        let get = |key: &str| egs_value(&self.conn, key);
        let (Some(token), Some(secret)) = (get(&format!("{prefix}_token"))?, get(&format!("{prefix}_secret"))?) else {
            return Ok(None);
        };
        let certificate = daftar_zatca::api::Credentials { token: token.clone(), secret: secret.clone() }
            .certificate_base64()
            .map_err(zatca_error)?;
        Ok(Some(CsidRecord {
            certificate,
            token,
            secret,
            request_id: get(&format!("{prefix}_request_id"))?.unwrap_or_default(),
            environment: get("environment")?.unwrap_or_default(),
            api_url: get("api_url")?.unwrap_or_default(),
        }))
    }

    /// E-invoices to submit, oldest first, with what the API needs (this unit's own e-invoices,
    /// as it stamped them).
    pub fn zatca_due(&self, limit: usize) -> Result<Vec<Due>> {
        let queue = self.zatca_submissions(Some("pending"))?;
        let mut out = Vec::new();
        for submission in queue.into_iter().take(limit) {
            let (uuid, hash, xml): (String, String, String) = self.conn.query_row(
                "SELECT uuid, hash, xml FROM zatca_submissions WHERE invoice_id = ?1",
                [&submission.invoice_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            out.push(Due { uuid, hash, xml, submission });
        }
        Ok(out)
    }

    /// Records ZATCA's answer to a submission (or why it could not be asked).
    pub fn zatca_record(&mut self, invoice_id: &str, result: &SubmissionResult) -> Result<()> {
        let now = self.clock.now().timestamp_millis();
        self.write(|tx, _, _| {
            let changed = tx.execute(
                "UPDATE zatca_submissions SET
                    status = coalesce(?2, status),
                    attempts = attempts + 1,
                    last_attempt = ?3,
                    last_error = ?4,
                    response = coalesce(?5, response),
                    cleared_xml = coalesce(?6, cleared_xml)
                 WHERE invoice_id = ?1",
                params![
                    invoice_id,
                    result.status,
                    now,
                    result.error,
                    result.response.as_ref().map(|r| r.to_string()),
                    result.cleared_xml
                ],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound { kind: "queued e-invoice", id: invoice_id.to_owned() });
            }
            Ok(())
        })
    }

    /// The invoice as ZATCA cleared it (with ZATCA's stamp), when this device had it cleared.
    pub fn zatca_cleared_xml(&self, invoice_id: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT cleared_xml FROM zatca_submissions WHERE invoice_id = ?1", [invoice_id], |r| r.get(0))
            .optional()?
            .flatten())
    }

    /// This device's e-invoices in the submission queue, oldest first; `status` filters.
    pub fn zatca_submissions(&self, status: Option<&str>) -> Result<Vec<Submission>> {
        let sql =
            format!("SELECT {SUBMISSION_COLUMNS} FROM zatca_submissions WHERE ?1 IS NULL OR status = ?1 ORDER BY icv");
        let mut statement = self.conn.prepare(&sql)?;
        let rows = statement.query_map([status], submission)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use daftar_domain::{Amount, VatCategory};

    use crate::{InitOptions, KeyChoice, LineInput, NewInvoice, Store, SystemClock};

    fn issued_store(dir: &std::path::Path, count: usize) -> Store {
        let seller = daftar_domain::SellerProfile {
            name: "Acme".into(),
            vat_number: "300000000000003".into(),
            ..Default::default()
        };
        let options = InitOptions {
            seller,
            series: None,
            key: KeyChoice::Passphrase("chain test".into()),
            device_name: "test".into(),
            member: None,
            existing: None,
        };
        let (mut store, _) = Store::init(&dir.join("data"), options, Arc::new(SystemClock)).unwrap();
        for n in 0..count {
            let line = LineInput {
                description: format!("item {n}"),
                quantity: "1".parse().unwrap(),
                unit_price: "10".parse().unwrap(),
                discount: Amount::ZERO,
                vat: VatCategory::standard(),
            };
            let id = store.create_invoice(NewInvoice { lines: vec![line], ..Default::default() }).unwrap().id;
            store.issue_invoice(id).unwrap();
        }
        store
    }

    #[test]
    fn verify_names_every_break_in_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let store = issued_store(dir.path(), 3);
        assert!(store.verify().unwrap().is_ok(), "{:?}", store.verify().unwrap().problems);
        let problems = |store: &Store| store.verify().unwrap().problems.join("\n");

        // A PIH that is not the previous hash.
        store.conn.execute("UPDATE zatca_submissions SET pih = 'AAAA' WHERE icv = 2", []).unwrap();
        assert!(problems(&store).contains("A-000002 (ICV 2) is not chained"), "{}", problems(&store));
        let hash: String =
            store.conn.query_row("SELECT hash FROM zatca_submissions WHERE icv = 1", [], |r| r.get(0)).unwrap();
        store.conn.execute("UPDATE zatca_submissions SET pih = ?1 WHERE icv = 2", [&hash]).unwrap();
        assert!(store.verify().unwrap().is_ok());

        // An XML changed after signing.
        store
            .conn
            .execute("UPDATE zatca_submissions SET xml = replace(xml, '>10.00<', '>11.00<') WHERE icv = 3", [])
            .unwrap();
        assert!(problems(&store).contains("A-000003 (ICV 3) hashes to"), "{}", problems(&store));

        // A gap: the first e-invoice gone.
        store.conn.execute("DELETE FROM zatca_submissions WHERE icv = 1", []).unwrap();
        let text = problems(&store);
        assert!(text.contains("counter value 2 where 1 comes next"), "{text}");
        assert!(text.contains("chain head (ICV 3) does not match the last e-invoice issued here (ICV 2)"), "{text}");
    }
}

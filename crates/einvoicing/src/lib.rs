//! ZATCA onboarding and submission: what joins the store's e-invoices to the Fatoora API.
//! The store and `daftar-zatca` stay free of this orchestration (and of each other's network);
//! the CLI and the app call these two functions.
//!
//! - [`onboard`]: a CSR for this unit's key, the compliance CSID (with the taxpayer's OTP), the
//!   compliance checks with one sample of each document type the unit issues, then the
//!   production CSID. From then on every issued e-invoice is stamped with ZATCA's certificate
//!   and queued.
//! - [`submit_pending`]: clears standard and reports simplified e-invoices in counter order,
//!   recording ZATCA's answer; a network failure leaves the rest queued for the next try.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use daftar_domain::invoice::BillingReference;
use daftar_domain::{
    CustomerSnapshot, DeviceId, Invoice, InvoiceId, InvoiceKind, Line, LineId, Problems, SellerProfile, VatCategory,
    compute_totals,
};
use daftar_store::{CsidRecord, EgsStage, Store, StoreError, SubmissionResult};
use daftar_zatca::api::{ApiError, Credentials, Fatoora, Outcome};
use daftar_zatca::cert::{Certificate, CsrFields, Environment};
use daftar_zatca::ubl::{Issue, Subtype};
use serde::Serialize;
use uuid::Uuid;

/// Onboarding or submission failed.
#[derive(Debug, thiserror::Error)]
pub enum EInvoicingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("the seller profile is not complete enough for ZATCA:\n{0}")]
    Seller(Problems),
    #[error("the certificate signing request could not be made: {0}")]
    Csr(#[from] daftar_zatca::cert::CertError),
    #[error("a compliance sample could not be stamped: {0}")]
    Stamp(#[from] daftar_zatca::ubl::StampingError),
    #[error("ZATCA rejected the compliance sample {document}:\n{messages}")]
    ComplianceFailed { document: String, messages: String },
    #[error("this device is not onboarded with ZATCA yet; run daftar zatca onboard --otp ...")]
    NotOnboarded,
}

/// How to onboard.
#[derive(Debug, Clone)]
pub struct OnboardOptions {
    /// The one-time password from the Fatoora portal.
    pub otp: String,
    pub environment: Environment,
    /// Another API address (a stub in tests); the environment's by default.
    pub api_url: Option<String>,
    pub branch: Option<String>,
    pub industry: Option<String>,
}

/// One compliance check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub document: String,
    pub status: String,
    pub warnings: Vec<String>,
}

/// What onboarding did.
#[derive(Debug, Clone, Serialize)]
pub struct OnboardReport {
    pub stage: EgsStage,
    pub environment: String,
    pub api_url: String,
    pub compliance_request_id: String,
    pub checks: Vec<Check>,
    pub certificate_issuer: String,
    pub certificate_expires: DateTime<Utc>,
}

fn messages(response: &daftar_zatca::api::InvoiceResponse) -> String {
    let results = &response.validation_results;
    results
        .error_messages
        .iter()
        .chain(&results.warning_messages)
        .map(|m| format!("{} {}: {}", m.kind, m.code, m.message))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The six documents ZATCA's compliance checks ask of a unit that issues both standard and
/// simplified invoices: an invoice, a credit note and a debit note of each.
fn compliance_samples(
    seller: &SellerProfile,
    key: &daftar_zatca::cert::SigningKey,
    certificate: &Certificate,
    now: DateTime<Utc>,
) -> Result<Vec<(String, daftar_zatca::ubl::Stamped, Uuid)>, EInvoicingError> {
    let mut out = Vec::new();
    let mut pih = daftar_zatca::FIRST_PIH.to_owned();
    let mut icv = 0;
    for subtype in [Subtype::Standard, Subtype::Simplified] {
        for kind in [InvoiceKind::Standard, InvoiceKind::CreditNote, InvoiceKind::DebitNote] {
            icv += 1;
            let kind = if kind == InvoiceKind::Standard && subtype == Subtype::Simplified {
                InvoiceKind::Simplified
            } else {
                kind
            };
            let id = Uuid::new_v4();
            let mut invoice = Invoice::draft(InvoiceId::from_uuid(id), kind, now);
            invoice.lines = vec![Line {
                id: LineId::from_uuid(Uuid::from_u128(1)),
                description: "Compliance check item".into(),
                quantity: "1".parse().expect("a quantity"),
                unit_price: "100.00".parse().expect("an amount"),
                discount: daftar_domain::Amount::ZERO,
                vat: VatCategory::standard(),
            }];
            if subtype == Subtype::Standard {
                invoice.customer = Some(CustomerSnapshot {
                    id: None,
                    name: "Compliance check buyer".into(),
                    vat_number: Some("399999999900003".into()),
                    address: seller.address.clone(),
                    email: String::new(),
                    phone: String::new(),
                });
            }
            if kind.is_note() {
                invoice.original = Some(BillingReference {
                    invoice_id: InvoiceId::from_uuid(Uuid::nil()),
                    number: "CMP-000001".into(),
                    reason: "Compliance check".into(),
                });
            }
            invoice.issue(format!("CMP-{icv:06}"), now, DeviceId::from_uuid(Uuid::nil())).map_err(|e| {
                EInvoicingError::ComplianceFailed { document: format!("sample {icv}"), messages: e.to_string() }
            })?;
            let totals = compute_totals(&invoice).expect("a one-line sample totals");
            let issue = Issue { invoice: &invoice, seller, totals: &totals, subtype, icv, pih: &pih };
            let stamped = daftar_zatca::ubl::stamp(&issue, key, certificate, now)?;
            pih = stamped.hash.clone();
            let name = format!(
                "{} {}",
                subtype.as_str(),
                kind.as_str().replace("simplified", "invoice").replace("standard", "invoice")
            );
            out.push((name, stamped, id));
        }
    }
    Ok(out)
}

/// Onboards this device as an EGS unit (see the crate docs).
pub fn onboard(store: &mut Store, options: &OnboardOptions) -> Result<OnboardReport, EInvoicingError> {
    store.permit(daftar_domain::Action::OnboardZatca)?;
    let seller = store.settings()?.seller;
    daftar_store::seller_rules(&seller).into_result().map_err(EInvoicingError::Seller)?;
    let info = store.info().clone();
    let key = store.egs_key()?;
    let api_url =
        options.api_url.clone().unwrap_or_else(|| daftar_zatca::api::base_url(options.environment).to_owned());
    let api = Fatoora::new(&api_url)?;
    let a = &seller.address;
    let fields = CsrFields {
        common_name: format!("Daftar-{}", info.device_id),
        egs_serial: format!("1-Daftar|2-{}|3-{}", env!("CARGO_PKG_VERSION"), info.device_id),
        vat_number: seller.vat_number.clone(),
        branch: options.branch.clone().unwrap_or_else(|| a.city.clone()),
        // The organisation as registered; a seller known only by its Arabic name uses that.
        organisation: if seller.name.trim().is_empty() { seller.name_ar.clone() } else { seller.name.clone() },
        invoice_types: "1100".into(),
        location: format!("{} {}, {}", a.building_number, a.street, a.city),
        industry: options.industry.clone().unwrap_or_else(|| "Trade".into()),
        environment: options.environment,
    };
    let csr = daftar_zatca::cert::csr(&key, &fields)?;
    let compliance = api.compliance_csid(&csr, options.otp.trim())?;
    let credentials = compliance.credentials();
    let certificate = Certificate::from_base64(&credentials.certificate_base64()?)?;
    let record = |response: &daftar_zatca::api::CsidResponse, certificate: String| CsidRecord {
        certificate,
        token: response.binary_security_token.clone(),
        secret: response.secret.clone(),
        request_id: response.request_id_text(),
        environment: options.environment.as_str().to_owned(),
        api_url: api_url.clone(),
    };
    store.zatca_set_csid(EgsStage::Compliance, &record(&compliance, certificate.base64()))?;
    let mut checks = Vec::new();
    for (document, stamped, uuid) in compliance_samples(&seller, &key, &certificate, Utc::now())? {
        match api.compliance_check(&credentials, &stamped.hash, &uuid.to_string(), &stamped.xml)? {
            Outcome::Accepted { response, warnings, .. } => checks.push(Check {
                document,
                status: response.validation_results.status.clone(),
                warnings: if warnings { vec![messages(&response)] } else { Vec::new() },
            }),
            Outcome::Rejected { response, .. } => {
                return Err(EInvoicingError::ComplianceFailed { document, messages: messages(&response) });
            }
        }
    }
    let production = api.production_csid(&credentials, &compliance.request_id_text())?;
    let production_certificate =
        Credentials { token: production.binary_security_token.clone(), secret: String::new() }.certificate_base64()?;
    let parsed = Certificate::from_base64(&production_certificate)?;
    store.zatca_set_csid(EgsStage::Production, &record(&production, production_certificate))?;
    Ok(OnboardReport {
        stage: EgsStage::Production,
        environment: options.environment.as_str().to_owned(),
        api_url,
        compliance_request_id: compliance.request_id_text(),
        checks,
        certificate_issuer: parsed.issuer(),
        certificate_expires: parsed.not_after(),
    })
}

/// What happened to one queued e-invoice.
#[derive(Debug, Clone, Serialize)]
pub struct Submitted {
    pub invoice_id: String,
    pub number: String,
    pub icv: u64,
    /// `reported`, `cleared`, `rejected`, or `pending` when it could not be sent.
    pub status: String,
    pub warnings: bool,
    pub messages: Vec<String>,
}

/// The result of a submission round.
#[derive(Debug, Clone, Serialize)]
pub struct SubmitReport {
    pub submitted: Vec<Submitted>,
    /// Why the round stopped early (ZATCA unreachable, credentials refused), if it did.
    pub stopped: Option<String>,
    /// E-invoices still pending after the round.
    pub pending: u64,
}

/// Submits up to `limit` pending e-invoices, oldest first.
pub fn submit_pending(store: &mut Store, limit: usize) -> Result<SubmitReport, EInvoicingError> {
    let csid = store.zatca_csid(EgsStage::Production)?.ok_or(EInvoicingError::NotOnboarded)?;
    let api = Fatoora::new(&csid.api_url)?;
    let credentials = Credentials { token: csid.token.clone(), secret: csid.secret.clone() };
    let mut submitted = Vec::new();
    let mut stopped = None;
    for due in store.zatca_due(limit)? {
        let standard = due.submission.subtype == "standard";
        let attempt = if standard {
            match api.clear(&credentials, &due.hash, &due.uuid, &due.xml) {
                // Clearance switched off for the taxpayer: ZATCA asks for reporting instead.
                Err(ApiError::ClearanceOff) => api.report(&credentials, &due.hash, &due.uuid, &due.xml),
                other => other,
            }
        } else {
            api.report(&credentials, &due.hash, &due.uuid, &due.xml)
        };
        let id = due.submission.invoice_id.clone();
        let mut entry = Submitted {
            invoice_id: id.clone(),
            number: due.submission.number.clone(),
            icv: due.submission.icv,
            status: "pending".into(),
            warnings: false,
            messages: Vec::new(),
        };
        match attempt {
            Ok(Outcome::Accepted { response, raw, warnings }) => {
                let status =
                    if response.clearance_status.as_deref() == Some("CLEARED") { "cleared" } else { "reported" };
                let cleared_xml = response
                    .cleared_invoice
                    .as_deref()
                    .and_then(|b| BASE64.decode(b).ok())
                    .and_then(|b| String::from_utf8(b).ok());
                store.zatca_record(
                    &id,
                    &SubmissionResult { status: Some(status.into()), error: None, response: Some(raw), cleared_xml },
                )?;
                entry.status = status.into();
                entry.warnings = warnings;
                entry.messages = messages(&response).lines().map(str::to_owned).collect();
            }
            Ok(Outcome::Rejected { response, raw }) => {
                let text = messages(&response);
                store.zatca_record(
                    &id,
                    &SubmissionResult {
                        status: Some("rejected".into()),
                        error: Some(text.clone()),
                        response: Some(raw),
                        cleared_xml: None,
                    },
                )?;
                entry.status = "rejected".into();
                entry.messages = text.lines().map(str::to_owned).collect();
            }
            Err(error) => {
                store.zatca_record(
                    &id,
                    &SubmissionResult { error: Some(error.to_string()), ..SubmissionResult::default() },
                )?;
                entry.messages = vec![error.to_string()];
                submitted.push(entry);
                stopped = Some(error.to_string());
                break;
            }
        }
        submitted.push(entry);
    }
    let pending = store.zatca_status()?.pending;
    Ok(SubmitReport { submitted, stopped, pending })
}

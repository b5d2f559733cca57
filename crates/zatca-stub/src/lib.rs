//! A local stand-in for ZATCA's Fatoora API, for tests: ZATCA's servers cannot be reached from
//! here. It follows the published request and response shapes (paths, headers, Basic
//! authentication with the CSID token and secret, camelCase JSON, status codes) and does the
//! checks that matter to a client:
//!
//! - `POST /compliance` takes a CSR and the OTP, checks the CSR's signature and ZATCA's fields
//!   (certificate template, EGS serial, VAT number, invoice types), and issues a compliance
//!   certificate signed by the stub's own CA key;
//! - `POST /compliance/invoices` verifies a sample e-invoice (hash, stamp, QR, that it is signed
//!   with the compliance certificate) and records which document types passed;
//! - `POST /production/csids` issues the production certificate once every type the CSR
//!   declared passed;
//! - `POST /invoices/reporting/single` and `/invoices/clearance/single` verify submissions
//!   signed with the production certificate (simplified and standard respectively), and warn
//!   when an e-invoice's PIH is not the hash of the unit's previous submission.
//!
//! What it does not do: check the business rules (BR-KSA-*) as ZATCA's validator does, or
//! add ZATCA's own stamp to a cleared invoice (the stub returns the invoice as submitted).
//! `POST /stub/outage` makes the next N requests fail with 503, to test retries.

// Handlers answer early with a ready `Response`; one is built per request, so its size is moot.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use daftar_zatca::cert::Certificate;
use k256::ecdsa::signature::Verifier;
use k256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use serde_json::{Value, json};
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::{Decode, Encode};
use x509_cert::name::Name;
use x509_cert::request::CertReq;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Validity;

/// The stub's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The one-time password the compliance CSID request must carry.
    pub otp: String,
    /// The certificate template name CSRs must request (`PREZATCA-Code-Signing` for the
    /// simulation environment).
    pub template: String,
}

struct Unit {
    /// The certificate's public key (DER SubjectPublicKeyInfo).
    public_key: Vec<u8>,
    /// Document types (`381:01`, `388:02`, …) that passed the compliance checks.
    passed: BTreeSet<String>,
    /// The invoice types the CSR declared (`1100`: standard and simplified).
    invoice_types: String,
    /// The hash of the unit's last accepted submission.
    last_hash: Option<String>,
}

struct Issued {
    secret: String,
    production: bool,
    request_id: String,
}

#[derive(Default)]
struct Ledger {
    /// token → what it authenticates.
    credentials: HashMap<String, Issued>,
    /// compliance request id → unit.
    units: HashMap<String, Unit>,
    outage: u32,
    next_id: u64,
}

#[derive(Clone)]
struct Stub {
    config: Config,
    ca: Arc<SigningKey>,
    ledger: Arc<Mutex<Ledger>>,
}

/// The router of the stub API.
pub fn router(config: Config) -> axum::Router {
    let mut seed = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed).expect("randomness");
    seed[0] |= 1;
    let ca = SigningKey::from_slice(&seed).expect("a random scalar is a key");
    let stub = Stub {
        config,
        ca: Arc::new(ca),
        ledger: Arc::new(Mutex::new(Ledger { next_id: 1_234_567_890_123, ..Ledger::default() })),
    };
    axum::Router::new()
        .route("/compliance", post(compliance))
        .route("/compliance/invoices", post(compliance_invoices))
        .route("/production/csids", post(production_csids))
        .route("/invoices/reporting/single", post(reporting))
        .route("/invoices/clearance/single", post(clearance))
        .route("/stub/outage", post(outage))
        .with_state(stub)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({ "code": code, "message": message }))).into_response()
}

fn check_version(headers: &HeaderMap) -> Result<(), Response> {
    match headers.get("Accept-Version").and_then(|v| v.to_str().ok()) {
        Some("V2") => Ok(()),
        _ => Err(error(StatusCode::BAD_REQUEST, "Invalid-Version", "The Accept-Version header must be V2")),
    }
}

fn in_outage(stub: &Stub) -> Option<Response> {
    let mut ledger = stub.ledger.lock().expect("ledger");
    if ledger.outage > 0 {
        ledger.outage -= 1;
        return Some((StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response());
    }
    None
}

/// The token of a Basic authorisation that the stub issued, and what it is.
fn authenticate(stub: &Stub, headers: &HeaderMap, production: bool) -> Result<(String, String), Response> {
    let unauthorized = || {
        (StatusCode::UNAUTHORIZED, Json(json!({ "code": "Unauthorized", "message": "Invalid credentials" })))
            .into_response()
    };
    let header = headers.get("Authorization").and_then(|v| v.to_str().ok()).ok_or_else(unauthorized)?;
    let encoded = header.strip_prefix("Basic ").ok_or_else(unauthorized)?;
    let decoded =
        String::from_utf8(BASE64.decode(encoded.trim()).map_err(|_| unauthorized())?).map_err(|_| unauthorized())?;
    let (token, secret) = decoded.split_once(':').ok_or_else(unauthorized)?;
    let ledger = stub.ledger.lock().expect("ledger");
    match ledger.credentials.get(token) {
        Some(issued) if issued.secret == secret && issued.production == production => {
            Ok((token.to_owned(), issued.request_id.clone()))
        }
        _ => Err(unauthorized()),
    }
}

fn csr_der(csr: &str) -> Result<Vec<u8>, String> {
    let pem = String::from_utf8(BASE64.decode(csr.trim()).map_err(|e| format!("csr is not base64: {e}"))?)
        .map_err(|_| "csr is not base64 of PEM text".to_owned())?;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    BASE64.decode(body).map_err(|e| format!("the PEM body is not base64: {e}"))
}

/// The fields ZATCA reads from a CSR's subject alternative name.
fn alt_fields(request: &CertReq) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for attribute in request.info.attributes.iter() {
        for value in attribute.values.iter() {
            let Ok(der) = value.to_der() else { continue };
            let Ok(extensions) = x509_cert::ext::Extensions::from_der(&der) else { continue };
            for extension in extensions {
                let oid = extension.extn_id.to_string();
                let bytes = extension.extn_value.as_bytes();
                if oid == "1.3.6.1.4.1.311.20.2" {
                    if let Ok(any) = x509_cert::der::Any::from_der(bytes) {
                        out.insert("template".into(), String::from_utf8_lossy(any.value()).into_owned());
                    }
                } else if oid == "2.5.29.17"
                    && let Ok(san) = x509_cert::ext::pkix::SubjectAltName::from_der(bytes)
                {
                    for name in san.0 {
                        if let x509_cert::ext::pkix::name::GeneralName::DirectoryName(rdns) = name {
                            for rdn in rdns.0.iter() {
                                for atv in rdn.0.iter() {
                                    out.insert(
                                        atv.oid.to_string(),
                                        String::from_utf8_lossy(atv.value.value()).into_owned(),
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

fn issue_certificate(
    stub: &Stub,
    subject: Name,
    spki: x509_cert::spki::SubjectPublicKeyInfoOwned,
    serial: u64,
) -> Result<Certificate, String> {
    let issuer: Name = "CN=DAFTAR-STUB-ZATCA-CA,DC=stub,DC=local".parse().map_err(|e| format!("{e}"))?;
    let profile = Profile::Leaf { issuer, enable_key_agreement: false, enable_key_encipherment: false };
    let validity = Validity::from_now(std::time::Duration::from_secs(365 * 86_400)).map_err(|e| e.to_string())?;
    let serial = SerialNumber::from(serial);
    let builder = CertificateBuilder::new(profile, serial, validity, subject, spki, stub.ca.as_ref())
        .map_err(|e| e.to_string())?;
    let certificate = builder.build::<DerSignature>().map_err(|e| e.to_string())?;
    Certificate::from_der(&certificate.to_der().map_err(|e| e.to_string())?).map_err(|e| e.to_string())
}

fn issue_credentials(stub: &Stub, certificate: &Certificate, production: bool, request_id: &str) -> (String, String) {
    let token = BASE64.encode(certificate.base64());
    let mut secret_bytes = [0u8; 24];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret_bytes).expect("randomness");
    let secret = BASE64.encode(secret_bytes);
    stub.ledger
        .lock()
        .expect("ledger")
        .credentials
        .insert(token.clone(), Issued { secret: secret.clone(), production, request_id: request_id.to_owned() });
    (token, secret)
}

async fn compliance(State(stub): State<Stub>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Some(r) = in_outage(&stub) {
        return r;
    }
    if let Err(r) = check_version(&headers) {
        return r;
    }
    let otp = headers.get("OTP").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if otp != stub.config.otp {
        return error(StatusCode::BAD_REQUEST, "Invalid-OTP", "The provided OTP is invalid or expired");
    }
    let Some(csr) = body.get("csr").and_then(Value::as_str) else {
        return error(StatusCode::BAD_REQUEST, "Missing-CSR", "The request body must carry csr");
    };
    let request = match csr_der(csr).and_then(|der| CertReq::from_der(&der).map_err(|e| e.to_string())) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "Invalid-CSR", &e),
    };
    // The CSR must be signed by the key it carries.
    let signed = (|| -> Result<(), String> {
        let spki_der = request.info.public_key.to_der().map_err(|e| e.to_string())?;
        let key = <VerifyingKey as k256::pkcs8::DecodePublicKey>::from_public_key_der(&spki_der)
            .map_err(|e| e.to_string())?;
        let signature = Signature::from_der(request.signature.raw_bytes()).map_err(|e| e.to_string())?;
        key.verify(&request.info.to_der().map_err(|e| e.to_string())?, &signature).map_err(|e| e.to_string())
    })();
    if let Err(e) = signed {
        return error(StatusCode::BAD_REQUEST, "Invalid-CSR", &format!("the CSR's signature does not verify: {e}"));
    }
    let fields = alt_fields(&request);
    let template = fields.get("template").cloned().unwrap_or_default();
    if template != stub.config.template {
        return error(
            StatusCode::BAD_REQUEST,
            "Invalid-CSR",
            &format!("certificate template must be {} (got {template:?})", stub.config.template),
        );
    }
    let serial = fields.get("2.5.4.4").cloned().unwrap_or_default();
    let vat = fields.get("0.9.2342.19200300.100.1.1").cloned().unwrap_or_default();
    let types = fields.get("2.5.4.12").cloned().unwrap_or_default();
    if serial.split('|').count() != 3 || !daftar_domain::VatNumber::is_valid(&vat) || types.len() != 4 {
        return error(
            StatusCode::BAD_REQUEST,
            "Invalid-CSR",
            "the CSR's EGS serial number, VAT number or invoice types are missing or malformed",
        );
    }
    let id = {
        let mut ledger = stub.ledger.lock().expect("ledger");
        ledger.next_id += 1;
        ledger.next_id
    };
    let certificate = match issue_certificate(&stub, request.info.subject.clone(), request.info.public_key.clone(), id)
    {
        Ok(c) => c,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "Issuing-Failed", &e),
    };
    let request_id = id.to_string();
    stub.ledger.lock().expect("ledger").units.insert(
        request_id.clone(),
        Unit {
            public_key: certificate.public_key_der(),
            passed: BTreeSet::new(),
            invoice_types: types,
            last_hash: None,
        },
    );
    let (token, secret) = issue_credentials(&stub, &certificate, false, &request_id);
    Json(json!({
        "requestID": id,
        "dispositionMessage": "ISSUED",
        "binarySecurityToken": token,
        "secret": secret,
        "errors": null,
    }))
    .into_response()
}

fn message(kind: &str, code: &str, category: &str, text: &str) -> Value {
    let status = if kind == "ERROR" {
        "ERROR"
    } else if kind == "WARNING" {
        "WARNING"
    } else {
        "PASS"
    };
    json!({ "type": kind, "code": code, "category": category, "message": text, "status": status })
}

/// Verifies a submission as ZATCA would for a client's purposes; the document type
/// (`388:01`…) and the list of errors and warnings.
fn examine(stub: &Stub, body: &Value, request_id: &str) -> (String, Vec<Value>, Vec<Value>, String) {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let hash = body.get("invoiceHash").and_then(Value::as_str).unwrap_or_default();
    let uuid = body.get("uuid").and_then(Value::as_str).unwrap_or_default();
    let xml = body
        .get("invoice")
        .and_then(Value::as_str)
        .and_then(|b| BASE64.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let Some(xml) = xml else {
        errors.push(message("ERROR", "invalid-invoice", "INVOICE_ERRORS", "invoice must be base64 of the UBL XML"));
        return (String::new(), errors, warnings, String::new());
    };
    let mut kind = String::new();
    match daftar_zatca::verify::verify(&xml) {
        Ok(verified) => {
            kind = format!("{}:{}", verified.type_code, if verified.subtype == "simplified" { "02" } else { "01" });
            if verified.hash != hash {
                errors.push(message(
                    "ERROR",
                    "invoiceHash",
                    "INVOICE_HASHING_ERRORS",
                    "The invoice hash API body does not match the (calculated) Hash of the XML",
                ));
            }
            if verified.uuid != uuid {
                errors.push(message(
                    "ERROR",
                    "uuid",
                    "XSD_ZATCA_INVALID",
                    "The UUID in the request body does not match the invoice's UUID",
                ));
            }
            let ledger = stub.ledger.lock().expect("ledger");
            let unit = ledger.units.get(request_id);
            let certificate = xml
                .split("<ds:X509Certificate>")
                .nth(1)
                .and_then(|rest| rest.split("</ds:X509Certificate>").next())
                .and_then(|b| Certificate::from_base64(b).ok());
            let key_matches = match (unit, &certificate) {
                (Some(unit), Some(c)) => {
                    c.public_key_der() == unit.public_key && c.issuer().contains("DAFTAR-STUB-ZATCA-CA")
                }
                _ => false,
            };
            if !key_matches {
                errors.push(message(
                    "ERROR",
                    "certificate",
                    "CERTIFICATE_ERRORS",
                    "The invoice is not signed with the certificate ZATCA issued to this unit",
                ));
            }
            if let Some(last) = unit.and_then(|u| u.last_hash.as_deref())
                && verified.pih != last
            {
                warnings.push(message(
                    "WARNING",
                    "KSA-13",
                    "KSA",
                    "The previous invoice hash (PIH) is not the hash of this unit's previous submission",
                ));
            }
        }
        Err(e) => errors.push(message("ERROR", "signature", "INVOICE_ERRORS", &e.to_string())),
    }
    (kind, errors, warnings, xml)
}

fn submission(stub: &Stub, headers: &HeaderMap, body: &Value, production: bool, clearance: Option<bool>) -> Response {
    if let Some(r) = in_outage(stub) {
        return r;
    }
    if let Err(r) = check_version(headers) {
        return r;
    }
    let (_, request_id) = match authenticate(stub, headers, production) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Some(clear) = clearance {
        let expected = if clear { "1" } else { "0" };
        if headers.get("Clearance-Status").and_then(|v| v.to_str().ok()) != Some(expected) {
            return error(
                StatusCode::BAD_REQUEST,
                "Clearance-Status",
                &format!("the Clearance-Status header must be {expected}"),
            );
        }
    }
    let (kind, mut errors, warnings, xml) = examine(stub, body, &request_id);
    if let Some(clear) = clearance
        && !kind.is_empty()
        && kind.ends_with(":01") != clear
    {
        errors.push(message(
            "ERROR",
            "invoiceTypeCode",
            "KSA",
            if clear {
                "Only standard tax invoices are cleared; report simplified ones"
            } else {
                "Only simplified tax invoices are reported; standard ones are cleared"
            },
        ));
    }
    let standard = kind.ends_with(":01");
    let accepted = errors.is_empty();
    if accepted {
        let mut ledger = stub.ledger.lock().expect("ledger");
        if let Some(unit) = ledger.units.get_mut(&request_id) {
            if production {
                unit.last_hash = body.get("invoiceHash").and_then(Value::as_str).map(str::to_owned);
            } else {
                unit.passed.insert(kind.clone());
            }
        }
    }
    let status_text = if !accepted {
        "ERROR"
    } else if warnings.is_empty() {
        "PASS"
    } else {
        "WARNING"
    };
    let mut response = json!({
        "validationResults": {
            "infoMessages": [message("INFO", "XSD_ZATCA_VALID", "XSD validation", "Complied with UBL 2.1 standards in line with ZATCA specifications")],
            "warningMessages": warnings,
            "errorMessages": errors,
            "status": status_text,
        },
    });
    if standard {
        response["clearanceStatus"] = json!(if accepted { "CLEARED" } else { "NOT_CLEARED" });
        response["clearedInvoice"] = if accepted { json!(BASE64.encode(&xml)) } else { Value::Null };
    } else {
        response["reportingStatus"] = json!(if accepted { "REPORTED" } else { "NOT_REPORTED" });
    }
    let code = if !accepted {
        StatusCode::BAD_REQUEST
    } else if status_text == "WARNING" {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    (code, Json(response)).into_response()
}

async fn compliance_invoices(State(stub): State<Stub>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    submission(&stub, &headers, &body, false, None)
}

async fn reporting(State(stub): State<Stub>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    submission(&stub, &headers, &body, true, Some(false))
}

async fn clearance(State(stub): State<Stub>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    submission(&stub, &headers, &body, true, Some(true))
}

/// The document types a unit declaring `invoice_types` must pass before production.
fn required_types(invoice_types: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (position, subtype) in [(0, "01"), (1, "02")] {
        if invoice_types.as_bytes().get(position) == Some(&b'1') {
            for code in ["388", "381", "383"] {
                out.push(format!("{code}:{subtype}"));
            }
        }
    }
    out
}

async fn production_csids(State(stub): State<Stub>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Some(r) = in_outage(&stub) {
        return r;
    }
    if let Err(r) = check_version(&headers) {
        return r;
    }
    let (token, request_id) = match authenticate(&stub, &headers, false) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let asked =
        body.get("compliance_request_id").map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()));
    if asked.as_deref() != Some(request_id.as_str()) {
        return error(
            StatusCode::BAD_REQUEST,
            "Invalid-Request-ID",
            "compliance_request_id is not this CSID's request id",
        );
    }
    let missing: Vec<String> = {
        let ledger = stub.ledger.lock().expect("ledger");
        let unit = ledger.units.get(&request_id).expect("a unit for every issued id");
        required_types(&unit.invoice_types).into_iter().filter(|t| !unit.passed.contains(t)).collect()
    };
    if !missing.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "Missing-ComplianceSteps",
            &format!("compliance checks not passed for {}", missing.join(", ")),
        );
    }
    let credentials = daftar_zatca::api::Credentials { token, secret: String::new() };
    let compliance = match credentials.certificate_base64().ok().and_then(|b| Certificate::from_base64(&b).ok()) {
        Some(c) => c,
        None => {
            return error(
                StatusCode::BAD_REQUEST,
                "Invalid-Token",
                "the compliance token does not carry a certificate",
            );
        }
    };
    let parsed = x509_cert::Certificate::from_der(compliance.der()).expect("the stub's own certificate parses");
    let id = {
        let mut ledger = stub.ledger.lock().expect("ledger");
        ledger.next_id += 1;
        ledger.next_id
    };
    let certificate = match issue_certificate(
        &stub,
        parsed.tbs_certificate.subject.clone(),
        parsed.tbs_certificate.subject_public_key_info.clone(),
        id,
    ) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "Issuing-Failed", &e),
    };
    let (token, secret) = issue_credentials(&stub, &certificate, true, &request_id);
    Json(json!({
        "requestID": id,
        "tokenType": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3",
        "dispositionMessage": "ISSUED",
        "binarySecurityToken": token,
        "secret": secret,
        "errors": null,
    }))
    .into_response()
}

async fn outage(State(stub): State<Stub>, Json(body): Json<Value>) -> Response {
    let requests = body.get("requests").and_then(Value::as_u64).unwrap_or(1) as u32;
    stub.ledger.lock().expect("ledger").outage = requests;
    Json(json!({ "outage": requests })).into_response()
}

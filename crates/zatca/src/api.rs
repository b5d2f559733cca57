//! The Fatoora platform's e-invoicing API, as ZATCA publishes it: the compliance CSID, the
//! compliance checks, the production CSID, reporting (simplified) and clearance (standard).
//! The only module of this crate that does I/O. TLS is the system's OpenSSL (native-tls), which
//! Daftar already links for SQLCipher; rustls without a provider would make every reqwest
//! client in a binary need one installed first.
//!
//! Requests and responses follow the published shapes: JSON with camelCase names, HTTP Basic
//! authentication with the `binarySecurityToken` and `secret` a CSID request returned,
//! `Accept-Version: V2`, an `OTP` header for the compliance CSID and `Clearance-Status` for
//! submissions. Status codes mean what ZATCA documents: 200 accepted, 202 accepted with
//! warnings, 400 rejected with the validation results, 401 bad credentials, 303 "clearance is
//! off, report instead", 429 and 5xx "try again later".

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::cert::Environment;

/// The base URL of each of ZATCA's environments.
pub fn base_url(environment: Environment) -> &'static str {
    match environment {
        Environment::Developer => "https://gw-fatoora.zatca.gov.sa/e-invoicing/developer-portal",
        Environment::Simulation => "https://gw-fatoora.zatca.gov.sa/e-invoicing/simulation",
        Environment::Production => "https://gw-fatoora.zatca.gov.sa/e-invoicing/core",
    }
}

/// What authenticates a unit: the token and secret of a CSID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// `binarySecurityToken`: base64 of the certificate's base64 text.
    pub token: String,
    pub secret: String,
}

impl Credentials {
    /// The certificate the token carries, as base64 of DER.
    pub fn certificate_base64(&self) -> Result<String, ApiError> {
        let text = BASE64
            .decode(self.token.trim())
            .map_err(|e| ApiError::BadResponse(format!("binarySecurityToken is not base64: {e}")))?;
        String::from_utf8(text).map_err(|_| ApiError::BadResponse("binarySecurityToken is not base64 text".into()))
    }
}

/// A CSID request's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CsidResponse {
    #[serde(rename = "requestID")]
    pub request_id: Value,
    pub disposition_message: String,
    pub binary_security_token: String,
    pub secret: String,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default)]
    pub errors: Option<Value>,
}

impl CsidResponse {
    pub fn credentials(&self) -> Credentials {
        Credentials { token: self.binary_security_token.clone(), secret: self.secret.clone() }
    }

    /// The request id as text (ZATCA sends a number; the production CSID request takes it back).
    pub fn request_id_text(&self) -> String {
        match &self.request_id {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

/// One message of ZATCA's validation results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidationResults {
    #[serde(default)]
    pub info_messages: Vec<Message>,
    #[serde(default)]
    pub warning_messages: Vec<Message>,
    #[serde(default)]
    pub error_messages: Vec<Message>,
    #[serde(default)]
    pub status: String,
}

/// The answer to a compliance check, a report or a clearance request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceResponse {
    #[serde(default)]
    pub validation_results: ValidationResults,
    #[serde(default)]
    pub reporting_status: Option<String>,
    #[serde(default)]
    pub clearance_status: Option<String>,
    /// For clearance: the invoice as ZATCA cleared it (base64 XML, with ZATCA's stamp and QR).
    #[serde(default)]
    pub cleared_invoice: Option<String>,
}

/// How a submission ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Reported or cleared (HTTP 200 or 202); 202 carries warnings.
    Accepted { response: InvoiceResponse, raw: Value, warnings: bool },
    /// Rejected (HTTP 400): ZATCA's errors say why; resubmitting the same XML will not help.
    Rejected { response: InvoiceResponse, raw: Value },
}

/// A request did not get an answer that settles it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "ZATCA's API could not be reached ({0}); the e-invoice stays queued and is sent when the connection is back"
    )]
    Unreachable(String),
    #[error("ZATCA refused the credentials (HTTP 401): {0}")]
    Unauthorized(String),
    #[error("ZATCA refused the request (HTTP {status}): {body}")]
    Refused { status: u16, body: String },
    #[error("ZATCA is busy or failing (HTTP {status}); the e-invoice stays queued and is retried")]
    Unavailable { status: u16 },
    #[error("clearance is switched off for this taxpayer (HTTP 303): report the invoice instead")]
    ClearanceOff,
    #[error("ZATCA's answer could not be read: {0}")]
    BadResponse(String),
}

impl ApiError {
    /// True when trying again later can succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, ApiError::Unreachable(_) | ApiError::Unavailable { .. })
    }
}

/// A client of one ZATCA environment (or of a stub at any URL).
#[derive(Debug, Clone)]
pub struct Fatoora {
    http: reqwest::blocking::Client,
    base: String,
}

impl Fatoora {
    pub fn new(base_url: &str) -> Result<Fatoora, ApiError> {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ApiError::Unreachable(e.to_string()))?;
        Ok(Fatoora { http, base: base_url.trim_end_matches('/').to_owned() })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn post(
        &self,
        path: &str,
        auth: Option<&Credentials>,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> Result<(u16, Value), ApiError> {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Accept", "application/json")
            .header("Accept-Language", "en")
            .header("Accept-Version", "V2")
            .json(body);
        if let Some(credentials) = auth {
            request = request.basic_auth(&credentials.token, Some(&credentials.secret));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().map_err(|e| ApiError::Unreachable(e.without_url().to_string()))?;
        let status = response.status().as_u16();
        let text = response.text().map_err(|e| ApiError::Unreachable(e.to_string()))?;
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        match status {
            401 => Err(ApiError::Unauthorized(value.to_string())),
            303 => Err(ApiError::ClearanceOff),
            429 | 500..=599 => Err(ApiError::Unavailable { status }),
            _ => Ok((status, value)),
        }
    }

    fn csid(
        &self,
        path: &str,
        auth: Option<&Credentials>,
        headers: &[(&str, &str)],
        body: Value,
    ) -> Result<CsidResponse, ApiError> {
        let (status, value) = self.post(path, auth, headers, &body)?;
        if status != 200 {
            return Err(ApiError::Refused { status, body: value.to_string() });
        }
        serde_json::from_value(value.clone()).map_err(|e| ApiError::BadResponse(format!("{e}: {value}")))
    }

    /// `POST /compliance`: a compliance CSID for a CSR (base64 of its PEM) and the OTP from
    /// the Fatoora portal.
    pub fn compliance_csid(&self, csr: &str, otp: &str) -> Result<CsidResponse, ApiError> {
        self.csid("/compliance", None, &[("OTP", otp)], json!({ "csr": csr }))
    }

    /// `POST /production/csids`: the production CSID, once the compliance checks passed.
    pub fn production_csid(&self, compliance: &Credentials, request_id: &str) -> Result<CsidResponse, ApiError> {
        self.csid("/production/csids", Some(compliance), &[], json!({ "compliance_request_id": request_id }))
    }

    fn submit(
        &self,
        path: &str,
        credentials: &Credentials,
        headers: &[(&str, &str)],
        hash: &str,
        uuid: &str,
        xml: &str,
    ) -> Result<Outcome, ApiError> {
        let body = json!({ "invoiceHash": hash, "uuid": uuid, "invoice": BASE64.encode(xml) });
        let (status, raw) = self.post(path, Some(credentials), headers, &body)?;
        let response: InvoiceResponse =
            serde_json::from_value(raw.clone()).map_err(|e| ApiError::BadResponse(format!("{e}: {raw}")))?;
        match status {
            200 | 202 => Ok(Outcome::Accepted { response, raw, warnings: status == 202 }),
            400 => Ok(Outcome::Rejected { response, raw }),
            _ => Err(ApiError::Refused { status, body: raw.to_string() }),
        }
    }

    /// `POST /compliance/invoices`: one of the compliance checks.
    pub fn compliance_check(
        &self,
        compliance: &Credentials,
        hash: &str,
        uuid: &str,
        xml: &str,
    ) -> Result<Outcome, ApiError> {
        self.submit("/compliance/invoices", compliance, &[], hash, uuid, xml)
    }

    /// `POST /invoices/reporting/single`: reports a simplified e-invoice.
    pub fn report(&self, production: &Credentials, hash: &str, uuid: &str, xml: &str) -> Result<Outcome, ApiError> {
        self.submit("/invoices/reporting/single", production, &[("Clearance-Status", "0")], hash, uuid, xml)
    }

    /// `POST /invoices/clearance/single`: clears a standard e-invoice.
    pub fn clear(&self, production: &Credentials, hash: &str, uuid: &str, xml: &str) -> Result<Outcome, ApiError> {
        self.submit("/invoices/clearance/single", production, &[("Clearance-Status", "1")], hash, uuid, xml)
    }
}

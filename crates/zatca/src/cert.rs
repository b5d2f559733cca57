//! The EGS unit's certificate: reading any X.509 certificate an e-invoice carries (issuer,
//! serial number, public key, the CA's signature for QR tag 9, the XAdES certificate digest),
//! the self-signed certificate a device signs with until it is onboarded, and the certificate
//! signing request ZATCA's onboarding takes.

use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use k256::ecdsa::DerSignature;
pub use k256::ecdsa::SigningKey;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::builder::{Builder, CertificateBuilder, Profile, RequestBuilder};
use x509_cert::der::asn1::{Any, PrintableStringRef, SetOfVec};
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::{Decode, Encode, Tag};
use x509_cert::ext::AsExtension;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::Validity;

/// A certificate could not be read or made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("the certificate is not base64: {0}")]
    NotBase64(String),
    #[error("the certificate is not a DER X.509 certificate: {0}")]
    NotX509(String),
    #[error("the certificate could not be made: {0}")]
    Build(String),
    #[error("CSR field {field} is invalid: {reason}")]
    CsrField { field: &'static str, reason: String },
}

/// An X.509 certificate as e-invoices carry it (base64 of DER in `ds:X509Certificate`).
#[derive(Debug, Clone)]
pub struct Certificate {
    der: Vec<u8>,
    parsed: x509_cert::Certificate,
}

impl Certificate {
    pub fn from_der(der: &[u8]) -> Result<Self, CertError> {
        let parsed = x509_cert::Certificate::from_der(der).map_err(|e| CertError::NotX509(e.to_string()))?;
        Ok(Self { der: der.to_vec(), parsed })
    }

    /// From the base64 text of `ds:X509Certificate` (whitespace ignored).
    pub fn from_base64(text: &str) -> Result<Self, CertError> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let der = BASE64.decode(compact).map_err(|e| CertError::NotBase64(e.to_string()))?;
        Self::from_der(&der)
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    pub fn base64(&self) -> String {
        BASE64.encode(&self.der)
    }

    /// The XAdES certificate digest as ZATCA computes it: base64 of the hex SHA-256 of the
    /// certificate's base64 text (not of its DER bytes; the SDK's samples are the oracle).
    pub fn digest(&self) -> String {
        let hex = hex::encode(ring::digest::digest(&ring::digest::SHA256, self.base64().as_bytes()));
        BASE64.encode(hex)
    }

    /// The issuer as ZATCA writes `ds:X509IssuerName`: most specific first, `", "` between,
    /// for example `CN=PRZEINVOICESCA4-CA, DC=extgazt, DC=gov, DC=local`.
    pub fn issuer(&self) -> String {
        name_text(&self.parsed.tbs_certificate.issuer)
    }

    pub fn subject(&self) -> String {
        name_text(&self.parsed.tbs_certificate.subject)
    }

    /// The serial number in decimal, as `ds:X509SerialNumber` holds it.
    pub fn serial_decimal(&self) -> String {
        decimal(self.parsed.tbs_certificate.serial_number.as_bytes())
    }

    /// The subject public key as DER `SubjectPublicKeyInfo` (QR tag 8).
    pub fn public_key_der(&self) -> Vec<u8> {
        self.parsed.tbs_certificate.subject_public_key_info.to_der().unwrap_or_default()
    }

    /// The issuing CA's signature over this certificate (QR tag 9 of simplified invoices).
    pub fn ca_signature(&self) -> Vec<u8> {
        self.parsed.signature.raw_bytes().to_vec()
    }

    /// True for a certificate its own key issued: a device's test certificate, never one of
    /// ZATCA's.
    pub fn is_self_signed(&self) -> bool {
        self.parsed.tbs_certificate.issuer == self.parsed.tbs_certificate.subject
    }

    pub fn not_after(&self) -> DateTime<Utc> {
        let t = self.parsed.tbs_certificate.validity.not_after.to_unix_duration();
        DateTime::from_timestamp(t.as_secs() as i64, 0).unwrap_or_default()
    }
}

/// Short names of the attributes certificates in this domain use.
const NAMES: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.4", "SN"),
    ("2.5.4.5", "SERIALNUMBER"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.12", "title"),
    ("2.5.4.15", "businessCategory"),
    ("2.5.4.26", "registeredAddress"),
    ("0.9.2342.19200300.100.1.1", "UID"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("1.2.840.113549.1.9.1", "E"),
];

fn name_text(name: &Name) -> String {
    let mut parts = Vec::new();
    for rdn in name.0.iter().rev() {
        for atv in rdn.0.iter() {
            let oid = atv.oid.to_string();
            let key = NAMES.iter().find(|(o, _)| *o == oid).map_or(oid.clone(), |(_, n)| (*n).to_owned());
            let value = String::from_utf8_lossy(atv.value.value()).into_owned();
            parts.push(format!("{key}={value}"));
        }
    }
    parts.join(", ")
}

/// Big-endian unsigned bytes in decimal.
fn decimal(bytes: &[u8]) -> String {
    let mut digits: Vec<u8> = vec![0]; // little-endian base-10 digits
    for &byte in bytes {
        let mut carry = u32::from(byte);
        for d in digits.iter_mut() {
            let v = u32::from(*d) * 256 + carry;
            *d = (v % 10) as u8;
            carry = v / 10;
        }
        while carry > 0 {
            digits.push((carry % 10) as u8);
            carry /= 10;
        }
    }
    while digits.len() > 1 && digits.last() == Some(&0) {
        digits.pop();
    }
    digits.iter().rev().map(|d| char::from(b'0' + d)).collect()
}

fn attribute(oid: &str, value: &str, tag: Tag) -> Result<AttributeTypeAndValue, CertError> {
    let oid = ObjectIdentifier::new(oid).map_err(|e| CertError::Build(e.to_string()))?;
    let value = Any::new(tag, value.as_bytes()).map_err(|e| CertError::Build(e.to_string()))?;
    Ok(AttributeTypeAndValue { oid, value })
}

fn rdn(atv: AttributeTypeAndValue) -> Result<RelativeDistinguishedName, CertError> {
    Ok(RelativeDistinguishedName(SetOfVec::try_from(vec![atv]).map_err(|e| CertError::Build(e.to_string()))?))
}

/// Which ZATCA environment a CSR is for; it decides the certificate template name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// The developer portal (sandbox): `TSTZATCA-Code-Signing`.
    Developer,
    /// The simulation environment: `PREZATCA-Code-Signing`.
    Simulation,
    /// Production: `ZATCA-Code-Signing`.
    Production,
}

impl Environment {
    pub fn template_name(self) -> &'static str {
        match self {
            Environment::Developer => "TSTZATCA-Code-Signing",
            Environment::Simulation => "PREZATCA-Code-Signing",
            Environment::Production => "ZATCA-Code-Signing",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Developer => "developer",
            Environment::Simulation => "simulation",
            Environment::Production => "production",
        }
    }
}

impl FromStr for Environment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "developer" | "developer-portal" | "sandbox" => Ok(Environment::Developer),
            "simulation" => Ok(Environment::Simulation),
            "production" | "core" => Ok(Environment::Production),
            _ => Err(format!("ZATCA environment must be developer, simulation or production (got {s:?})")),
        }
    }
}

/// What ZATCA's CSR must say about the EGS unit and its taxpayer.
#[derive(Debug, Clone)]
pub struct CsrFields {
    /// Common name: the EGS unit's name.
    pub common_name: String,
    /// `1-<solution name>|2-<model or version>|3-<serial number>`.
    pub egs_serial: String,
    /// The taxpayer's VAT number (15 digits).
    pub vat_number: String,
    /// Organisation unit: the branch name (or the 10-digit TIN of a VAT group member).
    pub branch: String,
    pub organisation: String,
    /// Four digits saying which invoice types the unit issues: standard, simplified, 0, 0.
    pub invoice_types: String,
    /// The branch address (short national address or free text).
    pub location: String,
    pub industry: String,
    pub environment: Environment,
}

/// The certificate template extension (Microsoft's `certificateTemplateName`).
struct TemplateName(&'static str);

impl x509_cert::der::oid::AssociatedOid for TemplateName {
    const OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.20.2");
}

impl x509_cert::der::Encode for TemplateName {
    fn encoded_len(&self) -> x509_cert::der::Result<x509_cert::der::Length> {
        PrintableStringRef::new(self.0)?.encoded_len()
    }
    fn encode(&self, encoder: &mut impl x509_cert::der::Writer) -> x509_cert::der::Result<()> {
        PrintableStringRef::new(self.0)?.encode(encoder)
    }
}

impl AsExtension for TemplateName {
    fn critical(&self, _subject: &Name, _extensions: &[x509_cert::ext::Extension]) -> bool {
        false
    }
}

/// The PEM text of a CSR for `key` with ZATCA's subject and extensions, base64-encoded as the
/// compliance API takes it.
pub fn csr(key: &SigningKey, fields: &CsrFields) -> Result<String, CertError> {
    let check = |field: &'static str, value: &str| {
        if value.trim().is_empty() {
            Err(CertError::CsrField { field, reason: "must not be empty".into() })
        } else {
            Ok(())
        }
    };
    check("common_name", &fields.common_name)?;
    check("organisation", &fields.organisation)?;
    check("branch", &fields.branch)?;
    check("location", &fields.location)?;
    check("industry", &fields.industry)?;
    let parts: Vec<&str> = fields.egs_serial.split('|').collect();
    if parts.len() != 3 || !parts.iter().zip(["1-", "2-", "3-"]).all(|(p, n)| p.starts_with(n) && p.len() > 2) {
        return Err(CertError::CsrField {
            field: "egs_serial",
            reason: format!("must read 1-<solution>|2-<model>|3-<serial> (got {:?})", fields.egs_serial),
        });
    }
    if !daftar_domain::party::VatNumber::is_valid(&fields.vat_number) {
        return Err(CertError::CsrField {
            field: "vat_number",
            reason: format!("must be 15 digits starting and ending with 3 (got {})", fields.vat_number),
        });
    }
    if fields.invoice_types.len() != 4 || !fields.invoice_types.bytes().all(|b| b == b'0' || b == b'1') {
        return Err(CertError::CsrField {
            field: "invoice_types",
            reason: format!("must be four 0/1 digits such as 1100 (got {})", fields.invoice_types),
        });
    }
    let subject = RdnSequence(vec![
        rdn(attribute("2.5.4.6", "SA", Tag::PrintableString)?)?,
        rdn(attribute("2.5.4.11", &fields.branch, Tag::Utf8String)?)?,
        rdn(attribute("2.5.4.10", &fields.organisation, Tag::Utf8String)?)?,
        rdn(attribute("2.5.4.3", &fields.common_name, Tag::Utf8String)?)?,
    ]);
    let alt = RdnSequence(vec![
        rdn(attribute("2.5.4.4", &fields.egs_serial, Tag::Utf8String)?)?,
        rdn(attribute("0.9.2342.19200300.100.1.1", &fields.vat_number, Tag::Utf8String)?)?,
        rdn(attribute("2.5.4.12", &fields.invoice_types, Tag::Utf8String)?)?,
        rdn(attribute("2.5.4.26", &fields.location, Tag::Utf8String)?)?,
        rdn(attribute("2.5.4.15", &fields.industry, Tag::Utf8String)?)?,
    ]);
    let build = |e: &dyn std::fmt::Display| CertError::Build(e.to_string());
    let mut builder = RequestBuilder::new(subject, key).map_err(|e| build(&e))?;
    builder.add_extension(&TemplateName(fields.environment.template_name())).map_err(|e| build(&e))?;
    builder.add_extension(&SubjectAltName(vec![GeneralName::DirectoryName(alt)])).map_err(|e| build(&e))?;
    let request = builder.build::<DerSignature>().map_err(|e| build(&e))?;
    let der = request.to_der().map_err(|e| build(&e))?;
    let body = BASE64.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE REQUEST-----\n");
    for chunk in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE REQUEST-----\n");
    Ok(BASE64.encode(pem))
}

/// A self-signed certificate for `key`, valid five years from `now`: what a device signs with
/// before onboarding. Its subject names the seller and says it is a Daftar test certificate;
/// ZATCA would reject invoices stamped with it, which is why they stay unreportable.
pub fn self_signed(
    key: &SigningKey,
    seller_name: &str,
    vat_number: &str,
    now: DateTime<Utc>,
) -> Result<Certificate, CertError> {
    let build = |e: &dyn std::fmt::Display| CertError::Build(e.to_string());
    let common = format!("Daftar self-signed EGS {vat_number}");
    let organisation = if seller_name.trim().is_empty() { "Daftar" } else { seller_name };
    let subject = RdnSequence(vec![
        rdn(attribute("2.5.4.6", "SA", Tag::PrintableString)?)?,
        rdn(attribute("2.5.4.10", organisation, Tag::Utf8String)?)?,
        rdn(attribute("2.5.4.3", &common, Tag::Utf8String)?)?,
    ]);
    let mut serial = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial)
        .map_err(|_| build(&"no randomness"))?;
    serial[0] = (serial[0] & 0x7f) | 0x01;
    let serial = SerialNumber::new(&serial).map_err(|e| build(&e))?;
    let start = Duration::from_secs(now.timestamp().max(0) as u64);
    let validity = Validity {
        not_before: x509_cert::time::Time::UtcTime(
            x509_cert::der::asn1::UtcTime::from_unix_duration(start).map_err(|e| build(&e))?,
        ),
        not_after: x509_cert::time::Time::UtcTime(
            x509_cert::der::asn1::UtcTime::from_unix_duration(start + Duration::from_secs(5 * 365 * 86_400))
                .map_err(|e| build(&e))?,
        ),
    };
    let spki = SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).map_err(|e| build(&e))?;
    let builder =
        CertificateBuilder::new(Profile::Root, serial, validity, subject, spki, key).map_err(|e| build(&e))?;
    let certificate = builder.build::<DerSignature>().map_err(|e| build(&e))?;
    Certificate::from_der(&certificate.to_der().map_err(|e| build(&e))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_serials() {
        assert_eq!(decimal(&[0]), "0");
        assert_eq!(decimal(&[1, 0]), "256");
        assert_eq!(decimal(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), u64::MAX.to_string());
    }

    #[test]
    fn a_self_signed_certificate_reads_back() {
        let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let cert = self_signed(&key, "شركة أكمي", "300000000000003", Utc::now()).unwrap();
        assert!(cert.is_self_signed());
        assert_eq!(cert.issuer(), "CN=Daftar self-signed EGS 300000000000003, O=شركة أكمي, C=SA");
        let again = Certificate::from_base64(&cert.base64()).unwrap();
        assert_eq!(again.public_key_der(), cert.public_key_der());
        assert!(!cert.serial_decimal().is_empty());
    }

    #[test]
    fn a_csr_carries_zatcas_fields_and_bad_fields_are_named() {
        let key = SigningKey::from_slice(&[9u8; 32]).unwrap();
        let mut fields = CsrFields {
            common_name: "Daftar-EGS-1".into(),
            egs_serial: "1-Daftar|2-1.0|3-6f1c2a9e-0000-4000-8000-000000000001".into(),
            vat_number: "300000000000003".into(),
            branch: "Riyadh Branch".into(),
            organisation: "Acme Trading".into(),
            invoice_types: "1100".into(),
            location: "RRRD2929".into(),
            industry: "Retail".into(),
            environment: Environment::Simulation,
        };
        let encoded = csr(&key, &fields).unwrap();
        let pem = String::from_utf8(BASE64.decode(encoded).unwrap()).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----\n"));
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = BASE64.decode(body).unwrap();
        let request = x509_cert::request::CertReq::from_der(&der).unwrap();
        assert_eq!(name_text(&request.info.subject), "CN=Daftar-EGS-1, O=Acme Trading, OU=Riyadh Branch, C=SA");
        let text = String::from_utf8_lossy(&der);
        assert!(text.contains("PREZATCA-Code-Signing") && text.contains("1100") && text.contains("300000000000003"));
        fields.egs_serial = "Daftar".into();
        assert!(matches!(csr(&key, &fields), Err(CertError::CsrField { field: "egs_serial", .. })));
    }
}

//! Checking any phase 2 e-invoice, ours or a supplier's: the invoice hash against the one the
//! stamp covers, the XAdES digests, the QR fields against the document, and the signature
//! against the QR's public key. Every check runs; all failures are reported together.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::cert::Certificate;
use crate::hash::HashError;
use crate::xml::{self, Element};
use crate::{qr, stamp};

/// What a verified e-invoice says about itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verified {
    pub number: String,
    pub uuid: String,
    /// The invoice hash (base64).
    pub hash: String,
    pub issue_date: String,
    pub issue_time: String,
    /// `388`, `381` or `383`.
    pub type_code: String,
    /// `standard` or `simplified` (from the transaction type).
    pub subtype: String,
    pub seller_name: String,
    pub seller_vat_number: String,
    pub total_with_vat: String,
    pub vat_total: String,
    pub icv: String,
    pub pih: String,
    pub certificate_issuer: String,
    /// True when the stamp's certificate is self-signed (a Daftar test certificate): the
    /// document is intact but was not stamped with a ZATCA-issued certificate.
    pub self_signed: bool,
    /// Names of the checks that passed, in order.
    pub checks: Vec<&'static str>,
}

/// The document is not a valid stamped e-invoice.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Malformed(#[from] HashError),
    #[error("not an e-invoice: the root element is <{0}>, expected <Invoice>")]
    NotAnInvoice(String),
    #[error("the e-invoice has no {0}")]
    Missing(&'static str),
    #[error("the e-invoice does not verify:\n{}", .0.join("\n"))]
    Failed(Vec<String>),
}

fn required<'a>(root: &'a Element, path: &str, what: &'static str) -> Result<&'a Element, VerifyError> {
    root.at(path).ok_or(VerifyError::Missing(what))
}

/// The `AdditionalDocumentReference` with this ID.
fn reference<'a>(root: &'a Element, id: &str) -> Option<&'a Element> {
    root.all("AdditionalDocumentReference").find(|r| r.text_at("ID") == Some(id))
}

/// A decimal as digits without insignificant zeros, for comparing `4.6` with `4.60`.
fn decimal(text: &str) -> Option<String> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole = whole.trim_start_matches('0');
    let fraction = fraction.trim_end_matches('0');
    let zero = whole.is_empty() && fraction.is_empty();
    Some(format!(
        "{}{}.{}",
        if negative && !zero { "-" } else { "" },
        if whole.is_empty() { "0" } else { whole },
        fraction
    ))
}

fn same_amount(a: &str, b: &str) -> bool {
    matches!((decimal(a), decimal(b)), (Some(x), Some(y)) if x == y)
}

/// Verifies a stamped e-invoice.
pub fn verify(source: &str) -> Result<Verified, VerifyError> {
    let root = xml::parse(source)?;
    if root.local() != "Invoice" {
        return Err(VerifyError::NotAnInvoice(root.name.clone()));
    }
    let hash = crate::invoice_hash(source)?;
    // One walk of the tree finds both parts of the stamp.
    let descendants = root.descendants();
    let signature_element = descendants
        .iter()
        .copied()
        .find(|e| e.local() == "Signature" && e.at("SignedInfo").is_some())
        .ok_or(VerifyError::Missing("XML signature (ds:Signature) in its UBL extensions"))?;
    let properties = descendants.iter().copied().find(|e| e.local() == "SignedProperties");
    let signed_info = required(signature_element, "SignedInfo", "ds:SignedInfo")?;
    let references: Vec<&Element> = signed_info.all("Reference").collect();
    let invoice_reference = references
        .iter()
        .find(|r| r.attribute("Id") == Some("invoiceSignedData"))
        .ok_or(VerifyError::Missing("invoiceSignedData reference in its signature"))?;
    let properties_reference = references
        .iter()
        .find(|r| r.attribute("URI") == Some("#xadesSignedProperties"))
        .ok_or(VerifyError::Missing("signed-properties reference in its signature"))?;
    let signature_value = required(signature_element, "SignatureValue", "ds:SignatureValue")?.text.trim().to_owned();
    let certificate_text = required(signature_element, "KeyInfo/X509Data/X509Certificate", "ds:X509Certificate")?;
    let qr_text = reference(&root, "QR")
        .and_then(|r| r.text_at("Attachment/EmbeddedDocumentBinaryObject"))
        .ok_or(VerifyError::Missing("QR code (AdditionalDocumentReference QR)"))?;

    let mut failures = Vec::new();
    let mut checks = Vec::new();
    let mut check = |name: &'static str, ok: bool, failure: String| {
        if ok {
            checks.push(name);
        } else {
            failures.push(failure);
        }
    };

    let stamped_hash = invoice_reference.text_at("DigestValue").unwrap_or_default().to_owned();
    check(
        "invoice hash",
        stamped_hash == hash,
        format!(
            "the invoice hash is {hash} but the stamp covers {stamped_hash}: the invoice was changed after it was signed"
        ),
    );

    // XAdES signed properties: digest of their text as written.
    match properties {
        Some(properties) => {
            let text = &source[properties.span.0..properties.span.1];
            let digest = stamp::signed_properties_digest(text);
            let stamped = properties_reference.text_at("DigestValue").unwrap_or_default();
            check(
                "signed properties digest",
                digest == stamped,
                format!(
                    "the signed properties (signing time, certificate) digest to {digest} but the signature covers {stamped}: they were changed after signing"
                ),
            );
        }
        None => check("signed properties digest", false, "the XAdES signed properties are missing".into()),
    }

    let certificate = match Certificate::from_base64(&certificate_text.text) {
        Ok(c) => Some(c),
        Err(e) => {
            check("certificate", false, format!("the signing certificate cannot be read: {e}"));
            None
        }
    };
    if let (Some(certificate), Some(properties)) = (&certificate, properties) {
        let cert = properties.at("SignedSignatureProperties/SigningCertificate/Cert");
        let digest = cert.and_then(|c| c.text_at("CertDigest/DigestValue")).unwrap_or_default();
        check(
            "certificate digest",
            digest == certificate.digest(),
            format!(
                "the certificate digest in the signed properties ({digest}) is not that of the certificate ({})",
                certificate.digest()
            ),
        );
        let serial = cert.and_then(|c| c.text_at("IssuerSerial/X509SerialNumber")).unwrap_or_default();
        check(
            "certificate serial number",
            serial == certificate.serial_decimal(),
            format!("the signed serial number {serial} is not the certificate's ({})", certificate.serial_decimal()),
        );
    }

    // The QR against the document.
    let fields = match qr::decode(qr_text) {
        Ok(fields) => fields,
        Err(e) => return Err(VerifyError::Failed(vec![format!("the QR code cannot be read: {e}")])),
    };
    let field = |tag: u8| fields.iter().find(|(t, _)| *t == tag).map(|(_, v)| v.as_slice());
    let field_text = |tag: u8| field(tag).map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
    let seller = root.at("AccountingSupplierParty/Party");
    let seller_name = seller.and_then(|p| p.text_at("PartyLegalEntity/RegistrationName")).unwrap_or_default();
    let seller_vat = seller.and_then(|p| p.text_at("PartyTaxScheme/CompanyID")).unwrap_or_default();
    let issue_date = root.text_at("IssueDate").unwrap_or_default();
    let issue_time = root.text_at("IssueTime").unwrap_or_default();
    let total = root.text_at("LegalMonetaryTotal/TaxInclusiveAmount").unwrap_or_default();
    // ZATCA's SDK writes the payable amount in tag 4 when a prepayment is deducted (its advance
    // payment samples); either is the document's own figure.
    let payable = root.text_at("LegalMonetaryTotal/PayableAmount").unwrap_or_default();
    let tax_totals: Vec<&str> = root.all("TaxTotal").filter_map(|t| t.text_at("TaxAmount")).collect();
    let subtype_code = root.at("InvoiceTypeCode").and_then(|e| e.attribute("name")).unwrap_or_default().to_owned();
    let simplified = subtype_code.starts_with("02");
    check(
        "QR seller name",
        field_text(1) == seller_name,
        format!("QR tag 1 (seller name) is {:?} but the document's seller is {seller_name:?}", field_text(1)),
    );
    check(
        "QR VAT number",
        field_text(2) == seller_vat,
        format!("QR tag 2 (VAT number) is {} but the document's seller VAT number is {seller_vat}", field_text(2)),
    );
    let timestamp = format!("{issue_date}T{issue_time}");
    check(
        "QR timestamp",
        field_text(3) == timestamp || field_text(3).starts_with(&timestamp),
        format!("QR tag 3 (time stamp) is {} but the document was issued {timestamp}", field_text(3)),
    );
    check(
        "QR total with VAT",
        same_amount(&field_text(4), total) || same_amount(&field_text(4), payable),
        format!("QR tag 4 (total with VAT) is {} but the document's total with VAT is {total}", field_text(4)),
    );
    check(
        "QR VAT total",
        tax_totals.iter().any(|t| same_amount(&field_text(5), t)),
        format!(
            "QR tag 5 (VAT total) is {} but the document's VAT totals are {}",
            field_text(5),
            tax_totals.join(" and ")
        ),
    );
    check(
        "QR invoice hash",
        field_text(6) == hash,
        format!("QR tag 6 (invoice hash) is {} but the document hashes to {hash}", field_text(6)),
    );
    check(
        "QR signature",
        field_text(7) == signature_value,
        "QR tag 7 (signature) is not the document's signature value".into(),
    );
    let public_key = field(8).unwrap_or_default();
    if let Some(certificate) = &certificate {
        check(
            "QR public key",
            public_key == certificate.public_key_der(),
            "QR tag 8 (public key) is not the signing certificate's key".into(),
        );
        if simplified {
            check(
                "QR certificate signature",
                field(9) == Some(certificate.ca_signature().as_slice()),
                "QR tag 9 (the certificate's signature) is missing or is not the signing certificate's".into(),
            );
        }
    }
    // The signature itself, over the invoice hash as the document stands.
    let signature = BASE64.decode(signature_value.as_bytes()).unwrap_or_default();
    match stamp::verify(&hash, &signature, public_key) {
        Ok(()) => check("signature", true, String::new()),
        Err(e) => check("signature", false, format!("the signature does not hold with the QR's public key: {e}")),
    }
    if !failures.is_empty() {
        return Err(VerifyError::Failed(failures));
    }
    Ok(Verified {
        number: root.text_at("ID").unwrap_or_default().to_owned(),
        uuid: root.text_at("UUID").unwrap_or_default().to_owned(),
        hash,
        issue_date: issue_date.to_owned(),
        issue_time: issue_time.to_owned(),
        type_code: root.text_at("InvoiceTypeCode").unwrap_or_default().to_owned(),
        subtype: if simplified { "simplified" } else { "standard" }.to_owned(),
        seller_name: seller_name.to_owned(),
        seller_vat_number: seller_vat.to_owned(),
        total_with_vat: total.to_owned(),
        vat_total: field_text(5),
        icv: reference(&root, "ICV").and_then(|r| r.text_at("UUID")).unwrap_or_default().to_owned(),
        pih: reference(&root, "PIH")
            .and_then(|r| r.text_at("Attachment/EmbeddedDocumentBinaryObject"))
            .unwrap_or_default()
            .to_owned(),
        certificate_issuer: certificate.as_ref().map(Certificate::issuer).unwrap_or_default(),
        self_signed: certificate.as_ref().is_some_and(Certificate::is_self_signed),
        checks,
    })
}

#[cfg(test)]
mod tests {
    use super::decimal;

    #[test]
    fn decimals_compare_without_insignificant_zeros() {
        assert_eq!(decimal("4.60"), decimal("4.6"));
        assert_eq!(decimal("00.0"), decimal("0.00"));
        assert_eq!(decimal("1035"), decimal("1035.00"));
        assert_ne!(decimal("4.60"), decimal("4.06"));
        assert_eq!(decimal("abc"), None);
    }
}

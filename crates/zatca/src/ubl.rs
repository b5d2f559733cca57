//! UBL 2.1 e-invoices from Daftar's invoices, stamped: the XML ZATCA's phase 2 requires for
//! standard and simplified tax invoices and their credit and debit notes, with the invoice
//! hash, the XAdES stamp and the QR code filled in.
//!
//! The layout (element order, attributes, the two `TaxTotal`s) follows ZATCA's SDK samples; the
//! element order is UBL 2.1's, which `xmllint --schema` checks in the tests.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, FixedOffset, Utc};
use daftar_domain::invoice::PaymentMethod;
use daftar_domain::tax::CategoryTotal;
use daftar_domain::{Address, Amount, Invoice, InvoiceKind, Rate, SellerProfile, Totals, VatCategory};
use k256::ecdsa::SigningKey;

use crate::cert::Certificate;
use crate::xml::text;
use crate::{qr, stamp};

/// B2B or B2C: the first two digits of the transaction type (`InvoiceTypeCode/@name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subtype {
    /// Standard tax invoice (`01`): cleared by ZATCA.
    Standard,
    /// Simplified tax invoice (`02`): reported to ZATCA.
    Simplified,
}

impl Subtype {
    /// The subtype of an invoice kind; notes take their original's (`note_original`).
    pub fn of(kind: InvoiceKind, note_original: Option<Subtype>) -> Subtype {
        match kind {
            InvoiceKind::Standard => Subtype::Standard,
            InvoiceKind::Simplified => Subtype::Simplified,
            _ => note_original.unwrap_or(Subtype::Standard),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Subtype::Standard => "standard",
            Subtype::Simplified => "simplified",
        }
    }
}

/// What an issued invoice is stamped from.
#[derive(Debug, Clone, Copy)]
pub struct Issue<'a> {
    /// An issued invoice (its number and issue time are set).
    pub invoice: &'a Invoice,
    pub seller: &'a SellerProfile,
    pub totals: &'a Totals,
    pub subtype: Subtype,
    /// The invoice counter value of the issuing device (EGS unit).
    pub icv: u64,
    /// The previous invoice hash of the issuing device.
    pub pih: &'a str,
}

/// A stamped e-invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamped {
    pub xml: String,
    /// The invoice hash (base64): the next invoice's PIH.
    pub hash: String,
    /// The QR payload (base64 of the TLV fields).
    pub qr: String,
    /// The stamp (base64 of the DER signature).
    pub signature: String,
}

/// Stamping failed.
#[derive(Debug, thiserror::Error)]
pub enum StampingError {
    #[error("invoice {0} is not issued yet: it has no number or issue time")]
    NotIssued(String),
    #[error(transparent)]
    Qr(#[from] qr::QrError),
    #[error(transparent)]
    Stamp(#[from] stamp::StampError),
    #[error("the e-invoice written for {number} does not hash as it was signed: {detail}")]
    Inconsistent { number: String, detail: String },
}

/// Saudi Arabia's time (UTC+3, no daylight saving): `IssueDate` and `IssueTime` are local.
pub fn riyadh(at: DateTime<Utc>) -> DateTime<FixedOffset> {
    at.with_timezone(&FixedOffset::east_opt(3 * 3600).expect("a valid offset"))
}

const QR_PLACEHOLDER: &str = "@@QR@@";

/// Writes, hashes, signs and QR-codes an issued invoice.
pub fn stamp(
    issue: &Issue<'_>,
    key: &SigningKey,
    certificate: &Certificate,
    signing_time: DateTime<Utc>,
) -> Result<Stamped, StampingError> {
    let invoice = issue.invoice;
    let number = invoice.number.clone().ok_or_else(|| StampingError::NotIssued(invoice.id.to_string()))?;
    let issued_at = invoice.issued_at.ok_or_else(|| StampingError::NotIssued(number.clone()))?;
    let local = riyadh(issued_at);
    let (head, tail) = document(issue, &number, local);
    // The hash leaves out the extensions, the signature and the QR: computed on the document
    // without them (the whitespace around them stays as in the final document).
    let unsigned = format!("{head}{tail}");
    let hash = crate::invoice_hash(&unsigned)
        .map_err(|e| StampingError::Inconsistent { number: number.clone(), detail: e.to_string() })?;
    let signature = stamp::sign(key, &hash)?;
    let signature_b64 = BASE64.encode(&signature);
    let seller_name = registration_name(issue.seller);
    let timestamp = local.format("%Y-%m-%dT%H:%M:%S").to_string();
    let total = issue.totals.gross.to_string();
    let vat = issue.totals.vat_sar.unwrap_or(issue.totals.vat).to_string();
    let public_key = certificate.public_key_der();
    let ca_signature = certificate.ca_signature();
    let mut fields: Vec<(u8, &[u8])> = vec![
        (1, seller_name.as_bytes()),
        (2, issue.seller.vat_number.as_bytes()),
        (3, timestamp.as_bytes()),
        (4, total.as_bytes()),
        (5, vat.as_bytes()),
        (6, hash.as_bytes()),
        (7, signature_b64.as_bytes()),
        (8, &public_key),
    ];
    if issue.subtype == Subtype::Simplified {
        fields.push((9, &ca_signature));
    }
    let qr = qr::encode(&fields)?;
    let signing_time = riyadh(signing_time).format("%Y-%m-%dT%H:%M:%S").to_string();
    let extensions = stamp::extensions(&hash, &signature, certificate, &signing_time);
    let xml = format!("{head}{extensions}{}", tail.replacen(QR_PLACEHOLDER, &qr, 1));
    // A self-check that costs one more parse: the document as written hashes as signed.
    let written = crate::invoice_hash(&xml)
        .map_err(|e| StampingError::Inconsistent { number: number.clone(), detail: e.to_string() })?;
    if written != hash {
        return Err(StampingError::Inconsistent { number, detail: format!("{written} ≠ {hash}") });
    }
    Ok(Stamped { xml, hash, qr, signature: signature_b64 })
}

/// The seller's `RegistrationName` and QR tag 1: the Arabic legal name when one is set.
pub fn registration_name(seller: &SellerProfile) -> String {
    if seller.name_ar.trim().is_empty() { seller.name.trim().to_owned() } else { seller.name_ar.trim().to_owned() }
}

/// The invoice type code (UNTDID 1001) of a kind.
pub fn type_code(kind: InvoiceKind) -> &'static str {
    match kind {
        InvoiceKind::Standard | InvoiceKind::Simplified => "388",
        InvoiceKind::CreditNote => "381",
        InvoiceKind::DebitNote => "383",
    }
}

/// The transaction type (`InvoiceTypeCode/@name`): subtype, then the third-party, nominal,
/// export, summary and self-billed flags, which Daftar does not issue.
pub fn transaction_type(subtype: Subtype) -> &'static str {
    match subtype {
        Subtype::Standard => "0100000",
        Subtype::Simplified => "0200000",
    }
}

fn payment_means_code(method: PaymentMethod) -> &'static str {
    match method {
        PaymentMethod::Cash => "10",
        PaymentMethod::Card => "48",
        PaymentMethod::BankTransfer => "42",
        PaymentMethod::Cheque => "20",
        PaymentMethod::Other => "1",
    }
}

fn percent(rate: Rate) -> String {
    let raw = rate.raw();
    format!("{}.{:02}", raw / 100, raw % 100)
}

fn amount(name: &str, value: Amount, currency: &str, indent: &str) -> String {
    format!("{indent}<cbc:{name} currencyID=\"{currency}\">{value}</cbc:{name}>\n")
}

fn tax_category(element: &str, vat: &VatCategory, indent: &str, with_reason: bool) -> String {
    let mut out = format!("{indent}<cac:{element}>\n");
    out.push_str(&format!(
        "{indent}    <cbc:ID schemeID=\"UN/ECE 5305\" schemeAgencyID=\"6\">{}</cbc:ID>\n",
        vat.code.as_str()
    ));
    out.push_str(&format!("{indent}    <cbc:Percent>{}</cbc:Percent>\n", percent(vat.rate)));
    if with_reason {
        if let Some(code) = &vat.exemption_code {
            out.push_str(&format!(
                "{indent}    <cbc:TaxExemptionReasonCode>{}</cbc:TaxExemptionReasonCode>\n",
                text(code)
            ));
        }
        if let Some(reason) = &vat.exemption_reason {
            out.push_str(&format!("{indent}    <cbc:TaxExemptionReason>{}</cbc:TaxExemptionReason>\n", text(reason)));
        }
    }
    out.push_str(&format!(
        "{indent}    <cac:TaxScheme>\n{indent}        <cbc:ID schemeID=\"UN/ECE 5153\" schemeAgencyID=\"6\">VAT</cbc:ID>\n{indent}    </cac:TaxScheme>\n"
    ));
    out.push_str(&format!("{indent}</cac:{element}>\n"));
    out
}

fn address(address: &Address, indent: &str) -> String {
    let mut out = format!("{indent}<cac:PostalAddress>\n");
    let field = |out: &mut String, name: &str, value: &str| {
        if !value.trim().is_empty() {
            out.push_str(&format!("{indent}    <cbc:{name}>{}</cbc:{name}>\n", text(value.trim())));
        }
    };
    field(&mut out, "StreetName", &address.street);
    field(&mut out, "BuildingNumber", &address.building_number);
    field(&mut out, "PlotIdentification", &address.additional_number);
    field(&mut out, "CitySubdivisionName", &address.district);
    field(&mut out, "CityName", &address.city);
    field(&mut out, "PostalZone", &address.postal_code);
    out.push_str(&format!(
        "{indent}    <cac:Country>\n{indent}        <cbc:IdentificationCode>{}</cbc:IdentificationCode>\n{indent}    </cac:Country>\n",
        text(&address.country)
    ));
    out.push_str(&format!("{indent}</cac:PostalAddress>\n"));
    out
}

fn tax_scheme(vat_number: &str, indent: &str) -> String {
    format!(
        "{indent}<cac:PartyTaxScheme>\n{indent}    <cbc:CompanyID>{}</cbc:CompanyID>\n{indent}    <cac:TaxScheme>\n{indent}        <cbc:ID>VAT</cbc:ID>\n{indent}    </cac:TaxScheme>\n{indent}</cac:PartyTaxScheme>\n",
        text(vat_number)
    )
}

fn legal_entity(name: &str, indent: &str) -> String {
    format!(
        "{indent}<cac:PartyLegalEntity>\n{indent}    <cbc:RegistrationName>{}</cbc:RegistrationName>\n{indent}</cac:PartyLegalEntity>\n",
        text(name)
    )
}

/// The document before and after the place of the UBL extensions; the QR payload is
/// [`QR_PLACEHOLDER`] in the second part.
fn document(issue: &Issue<'_>, number: &str, local: DateTime<FixedOffset>) -> (String, String) {
    let invoice = issue.invoice;
    let totals = issue.totals;
    let currency = invoice.currency.code().to_owned();
    let cur = currency.as_str();
    let head = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Invoice xmlns=\"urn:oasis:names:specification:ubl:schema:xsd:Invoice-2\" xmlns:cac=\"urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2\" xmlns:cbc=\"urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2\" xmlns:ext=\"urn:oasis:names:specification:ubl:schema:xsd:CommonExtensionComponents-2\">".to_owned();
    let mut x = String::with_capacity(8192 + invoice.lines.len() * 1024);
    x.push_str("\n    <cbc:ProfileID>reporting:1.0</cbc:ProfileID>\n");
    x.push_str(&format!("    <cbc:ID>{}</cbc:ID>\n", text(number)));
    x.push_str(&format!("    <cbc:UUID>{}</cbc:UUID>\n", invoice.id.as_uuid()));
    x.push_str(&format!("    <cbc:IssueDate>{}</cbc:IssueDate>\n", local.format("%Y-%m-%d")));
    x.push_str(&format!("    <cbc:IssueTime>{}</cbc:IssueTime>\n", local.format("%H:%M:%S")));
    if let Some(due) = invoice.due_date {
        x.push_str(&format!("    <cbc:DueDate>{due}</cbc:DueDate>\n"));
    }
    x.push_str(&format!(
        "    <cbc:InvoiceTypeCode name=\"{}\">{}</cbc:InvoiceTypeCode>\n",
        transaction_type(issue.subtype),
        type_code(invoice.kind)
    ));
    if !invoice.notes.trim().is_empty() {
        x.push_str(&format!("    <cbc:Note>{}</cbc:Note>\n", text(invoice.notes.trim())));
    }
    x.push_str(&format!("    <cbc:DocumentCurrencyCode>{cur}</cbc:DocumentCurrencyCode>\n"));
    x.push_str("    <cbc:TaxCurrencyCode>SAR</cbc:TaxCurrencyCode>\n");
    if let (true, Some(original)) = (invoice.kind.is_note(), &invoice.original) {
        x.push_str(&format!(
            "    <cac:BillingReference>\n        <cac:InvoiceDocumentReference>\n            <cbc:ID>{}</cbc:ID>\n        </cac:InvoiceDocumentReference>\n    </cac:BillingReference>\n",
            text(&original.number)
        ));
    }
    x.push_str(&format!(
        "    <cac:AdditionalDocumentReference>\n        <cbc:ID>ICV</cbc:ID>\n        <cbc:UUID>{}</cbc:UUID>\n    </cac:AdditionalDocumentReference>\n",
        issue.icv
    ));
    x.push_str(&format!(
        "    <cac:AdditionalDocumentReference>\n        <cbc:ID>PIH</cbc:ID>\n        <cac:Attachment>\n            <cbc:EmbeddedDocumentBinaryObject mimeCode=\"text/plain\">{}</cbc:EmbeddedDocumentBinaryObject>\n        </cac:Attachment>\n    </cac:AdditionalDocumentReference>\n",
        text(issue.pih)
    ));
    x.push_str(&format!(
        "    <cac:AdditionalDocumentReference>\n        <cbc:ID>QR</cbc:ID>\n        <cac:Attachment>\n            <cbc:EmbeddedDocumentBinaryObject mimeCode=\"text/plain\">{QR_PLACEHOLDER}</cbc:EmbeddedDocumentBinaryObject>\n        </cac:Attachment>\n    </cac:AdditionalDocumentReference>\n"
    ));
    x.push_str("    <cac:Signature>\n        <cbc:ID>urn:oasis:names:specification:ubl:signature:Invoice</cbc:ID>\n        <cbc:SignatureMethod>urn:oasis:names:specification:ubl:dsig:enveloped:xades</cbc:SignatureMethod>\n    </cac:Signature>\n");
    // Seller.
    let seller = issue.seller;
    x.push_str("    <cac:AccountingSupplierParty>\n        <cac:Party>\n");
    if !seller.cr_number.trim().is_empty() {
        x.push_str(&format!(
            "            <cac:PartyIdentification>\n                <cbc:ID schemeID=\"CRN\">{}</cbc:ID>\n            </cac:PartyIdentification>\n",
            text(seller.cr_number.trim())
        ));
    }
    x.push_str(&address(&seller.address, "            "));
    x.push_str(&tax_scheme(&seller.vat_number, "            "));
    x.push_str(&legal_entity(&registration_name(seller), "            "));
    x.push_str("        </cac:Party>\n    </cac:AccountingSupplierParty>\n");
    // Buyer: a simplified invoice may have none (the UBL element stays, empty).
    x.push_str("    <cac:AccountingCustomerParty>\n");
    match &invoice.customer {
        Some(customer) => {
            x.push_str("        <cac:Party>\n");
            if !customer.address.is_empty() {
                x.push_str(&address(&customer.address, "            "));
            }
            if let Some(vat) = customer.vat_number.as_deref().filter(|v| !v.trim().is_empty()) {
                x.push_str(&tax_scheme(vat.trim(), "            "));
            }
            x.push_str(&legal_entity(customer.name.trim(), "            "));
            x.push_str("        </cac:Party>\n");
        }
        None => x.push_str("        <cac:Party/>\n"),
    }
    x.push_str("    </cac:AccountingCustomerParty>\n");
    if let Some(supply) = invoice.supply_date {
        x.push_str(&format!(
            "    <cac:Delivery>\n        <cbc:ActualDeliveryDate>{supply}</cbc:ActualDeliveryDate>\n    </cac:Delivery>\n"
        ));
    }
    let means = invoice.payments.first().map(|p| payment_means_code(p.method));
    if means.is_some() || invoice.kind.is_note() {
        x.push_str(&format!(
            "    <cac:PaymentMeans>\n        <cbc:PaymentMeansCode>{}</cbc:PaymentMeansCode>\n",
            means.unwrap_or("1")
        ));
        if let (true, Some(original)) = (invoice.kind.is_note(), &invoice.original) {
            x.push_str(&format!(
                "        <cbc:InstructionNote>{}</cbc:InstructionNote>\n",
                text(original.reason.trim())
            ));
        }
        x.push_str("    </cac:PaymentMeans>\n");
    }
    if let Some(discount) = &invoice.discount {
        x.push_str("    <cac:AllowanceCharge>\n        <cbc:ChargeIndicator>false</cbc:ChargeIndicator>\n");
        let reason = if discount.reason.trim().is_empty() { "discount" } else { discount.reason.trim() };
        x.push_str(&format!("        <cbc:AllowanceChargeReason>{}</cbc:AllowanceChargeReason>\n", text(reason)));
        x.push_str(&amount("Amount", discount.amount, cur, "        "));
        x.push_str(&tax_category("TaxCategory", &discount.vat, "        ", false));
        x.push_str("    </cac:AllowanceCharge>\n");
    }
    // Tax totals: the VAT in SAR (the tax currency), then the breakdown in the document currency.
    x.push_str("    <cac:TaxTotal>\n");
    x.push_str(&amount("TaxAmount", totals.vat_sar.unwrap_or(totals.vat), "SAR", "        "));
    x.push_str("    </cac:TaxTotal>\n    <cac:TaxTotal>\n");
    x.push_str(&amount("TaxAmount", totals.vat, cur, "        "));
    for category in &totals.breakdown {
        x.push_str(&subtotal(category, cur));
    }
    x.push_str("    </cac:TaxTotal>\n");
    x.push_str("    <cac:LegalMonetaryTotal>\n");
    x.push_str(&amount("LineExtensionAmount", totals.lines_net, cur, "        "));
    x.push_str(&amount("TaxExclusiveAmount", totals.net, cur, "        "));
    x.push_str(&amount("TaxInclusiveAmount", totals.gross, cur, "        "));
    x.push_str(&amount("AllowanceTotalAmount", totals.discount, cur, "        "));
    x.push_str(&amount("PrepaidAmount", Amount::ZERO, cur, "        "));
    x.push_str(&amount("PayableAmount", totals.gross, cur, "        "));
    x.push_str("    </cac:LegalMonetaryTotal>\n");
    for (index, (line, line_total)) in invoice.lines.iter().zip(&totals.lines).enumerate() {
        x.push_str(&format!("    <cac:InvoiceLine>\n        <cbc:ID>{}</cbc:ID>\n", index + 1));
        x.push_str(&format!(
            "        <cbc:InvoicedQuantity unitCode=\"PCE\">{}</cbc:InvoicedQuantity>\n",
            line.quantity
        ));
        x.push_str(&amount("LineExtensionAmount", line_total.net, cur, "        "));
        if !line.discount.is_zero() {
            x.push_str("        <cac:AllowanceCharge>\n            <cbc:ChargeIndicator>false</cbc:ChargeIndicator>\n            <cbc:AllowanceChargeReason>discount</cbc:AllowanceChargeReason>\n");
            x.push_str(&amount("Amount", line.discount, cur, "            "));
            x.push_str("        </cac:AllowanceCharge>\n");
        }
        x.push_str("        <cac:TaxTotal>\n");
        x.push_str(&amount("TaxAmount", line_total.vat, cur, "            "));
        let rounding = line_total.net.checked_add(line_total.vat).unwrap_or(line_total.net);
        x.push_str(&amount("RoundingAmount", rounding, cur, "            "));
        x.push_str("        </cac:TaxTotal>\n");
        x.push_str(&format!(
            "        <cac:Item>\n            <cbc:Name>{}</cbc:Name>\n",
            text(line.description.trim())
        ));
        x.push_str(&format!(
            "            <cac:ClassifiedTaxCategory>\n                <cbc:ID>{}</cbc:ID>\n                <cbc:Percent>{}</cbc:Percent>\n                <cac:TaxScheme>\n                    <cbc:ID>VAT</cbc:ID>\n                </cac:TaxScheme>\n            </cac:ClassifiedTaxCategory>\n",
            line.vat.code.as_str(),
            percent(line.vat.rate)
        ));
        x.push_str("        </cac:Item>\n        <cac:Price>\n");
        x.push_str(&amount("PriceAmount", line.unit_price, cur, "            "));
        x.push_str("        </cac:Price>\n    </cac:InvoiceLine>\n");
    }
    x.push_str("</Invoice>\n");
    (head, x)
}

fn subtotal(category: &CategoryTotal, cur: &str) -> String {
    let mut out = String::from("        <cac:TaxSubtotal>\n");
    out.push_str(&amount("TaxableAmount", category.taxable, cur, "            "));
    out.push_str(&amount("TaxAmount", category.vat, cur, "            "));
    let vat = VatCategory {
        code: category.code,
        rate: category.rate,
        exemption_code: category.exemption_code.clone(),
        exemption_reason: category.exemption_reason.clone(),
    };
    out.push_str(&tax_category("TaxCategory", &vat, "            ", true));
    out.push_str("        </cac:TaxSubtotal>\n");
    out
}

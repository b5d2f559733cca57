//! Printable invoices: a bilingual (English and Arabic) A4 PDF of an invoice, credit note or
//! debit note, with the ZATCA QR code of its e-invoice.
//!
//! Typst lays it out ([`invoice.typ`](../src/invoice.typ)): it shapes Arabic with HarfBuzz
//! (rustybuzz) and orders right-to-left text by the Unicode bidi algorithm, which hand-placed
//! PDF text cannot do. The fonts are the OFL-licensed Noto Sans and Noto Sans Arabic, compiled
//! into the binary (`fonts/`, with their licence), so a PDF looks the same on every machine.
//! Every figure arrives formatted from the domain's exact amounts; the template only places
//! text.

use std::sync::OnceLock;

use chrono::{DateTime, FixedOffset, Utc};
use daftar_domain::{Amount, Invoice, InvoiceKind, SellerProfile, VatCode, compute_totals};
use serde_json::{Value, json};
use typst::foundations::{Dict, IntoValue};
use typst_as_lib::{TypstEngine, TypstTemplateMainFile};

const TEMPLATE: &str = include_str!("invoice.typ");
/// The fonts every PDF is set in (public for the benchmark's floor).
pub const FONTS: [&[u8]; 4] = [
    include_bytes!("../fonts/NotoSans-Regular.ttf"),
    include_bytes!("../fonts/NotoSans-Bold.ttf"),
    include_bytes!("../fonts/NotoSansArabic-Regular.ttf"),
    include_bytes!("../fonts/NotoSansArabic-Bold.ttf"),
];

/// The PDF could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error("the invoice's totals cannot be computed: {0}")]
    Totals(String),
    #[error("the invoice could not be typeset: {0}")]
    Typeset(String),
    #[error("the PDF could not be written: {0}")]
    Pdf(String),
    #[error("the QR code could not be drawn: {0}")]
    Qr(String),
}

/// `text` as a QR code drawn in SVG (error correction M, with its quiet zone): the ZATCA code
/// on invoices, and the authenticator-app enrolment in the app.
pub fn qr_svg(text: &str) -> Result<String, PdfError> {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(|err| PdfError::Qr(err.to_string()))?;
    Ok(code.render::<qrcode::render::svg::Color<'_>>().quiet_zone(true).min_dimensions(240, 240).build())
}

/// Parsing the fonts and the template takes longer than typesetting one invoice, so it is
/// done once per process.
fn engine() -> &'static TypstEngine<TypstTemplateMainFile> {
    static ENGINE: OnceLock<TypstEngine<TypstTemplateMainFile>> = OnceLock::new();
    ENGINE.get_or_init(|| TypstEngine::builder().main_file(TEMPLATE).fonts(FONTS).build())
}

/// The PDF of `invoice`, issued by `seller`.
pub fn render(invoice: &Invoice, seller: &SellerProfile) -> Result<Vec<u8>, PdfError> {
    let data = view(invoice, seller)?;
    let mut inputs = Dict::new();
    inputs.insert("data".into(), data.to_string().into_value());
    let compiled = engine().compile_with_input(inputs);
    let document = compiled.output.map_err(|e| PdfError::Typeset(format!("{e:?}")))?;
    typst_pdf::pdf(&document, &typst_pdf::PdfOptions::default())
        .map_err(|e| PdfError::Pdf(e.iter().map(|d| d.message.to_string()).collect::<Vec<_>>().join("; ")))
}

/// An amount with thousands separators, as printed: `12,345.60`.
pub fn money(amount: Amount) -> String {
    let text = amount.to_string();
    let (sign, digits) = text.strip_prefix('-').map_or(("", text.as_str()), |rest| ("-", rest));
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "00"));
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}.{fraction}")
}

fn riyadh(at: DateTime<Utc>) -> DateTime<FixedOffset> {
    at.with_timezone(&FixedOffset::east_opt(3 * 3600).expect("a valid offset"))
}

fn titles(invoice: &Invoice) -> (&'static str, &'static str) {
    let simplified = match &invoice.einvoice {
        Some(e) => e.subtype == "simplified",
        None => invoice.kind == InvoiceKind::Simplified,
    };
    match (invoice.kind, simplified) {
        (InvoiceKind::Standard, _) => ("Tax Invoice", "فاتورة ضريبية"),
        (InvoiceKind::Simplified, _) => ("Simplified Tax Invoice", "فاتورة ضريبية مبسطة"),
        (InvoiceKind::CreditNote, false) => ("Credit Note", "إشعار دائن"),
        (InvoiceKind::CreditNote, true) => ("Simplified Credit Note", "إشعار دائن مبسط"),
        (InvoiceKind::DebitNote, false) => ("Debit Note", "إشعار مدين"),
        (InvoiceKind::DebitNote, true) => ("Simplified Debit Note", "إشعار مدين مبسط"),
    }
}

fn category(code: VatCode) -> (&'static str, &'static str) {
    match code {
        VatCode::S => ("Standard rate", "النسبة الأساسية"),
        VatCode::Z => ("Zero-rated", "خاضع لنسبة الصفر"),
        VatCode::E => ("Exempt", "معفى"),
        VatCode::O => ("Out of scope", "خارج نطاق الضريبة"),
    }
}

fn address_lines(address: &daftar_domain::Address) -> Vec<String> {
    let join = |parts: &[&str]| parts.iter().filter(|p| !p.trim().is_empty()).copied().collect::<Vec<_>>().join(", ");
    let mut lines = Vec::new();
    let street = join(&[&address.building_number, &address.street]);
    if !street.is_empty() {
        lines.push(street);
    }
    let place = join(&[&address.district, &address.city, &address.postal_code]);
    if !place.is_empty() {
        lines.push(place);
    }
    if !address.additional_number.trim().is_empty() {
        lines.push(format!("Additional no. {}", address.additional_number.trim()));
    }
    if !address.is_empty() {
        lines.push(address.country.clone());
    }
    lines
}

/// Everything the template prints, formatted.
fn view(invoice: &Invoice, seller: &SellerProfile) -> Result<Value, PdfError> {
    let totals = compute_totals(invoice).map_err(|e| PdfError::Totals(e.to_string()))?;
    let currency = invoice.currency.code().to_owned();
    let with_currency = |a: Amount| format!("{} {currency}", money(a));
    let (title_en, title_ar) = titles(invoice);
    let number = invoice.number.clone().unwrap_or_else(|| "DRAFT".to_owned());
    let mut facts = vec![json!({ "en": "Number", "ar": "الرقم", "value": number })];
    if let Some(at) = invoice.issued_at {
        let local = riyadh(at);
        facts
            .push(json!({ "en": "Issued", "ar": "تاريخ الإصدار", "value": local.format("%Y-%m-%d %H:%M").to_string() }));
    }
    if let Some(date) = invoice.supply_date {
        facts.push(json!({ "en": "Supply date", "ar": "تاريخ التوريد", "value": date.to_string() }));
    }
    if let Some(date) = invoice.due_date {
        facts.push(json!({ "en": "Due", "ar": "تاريخ الاستحقاق", "value": date.to_string() }));
    }
    facts.push(json!({ "en": "Currency", "ar": "العملة", "value": currency }));
    if let Some(rate) = invoice.exchange_rate.filter(|_| !invoice.currency.is_sar()) {
        facts.push(json!({ "en": "Exchange rate", "ar": "سعر الصرف", "value": format!("1 {currency} = {rate} SAR") }));
    }
    if let Some(original) = &invoice.original {
        facts.push(json!({ "en": "Original invoice", "ar": "الفاتورة الأصلية", "value": original.number }));
        facts.push(json!({ "en": "Reason", "ar": "السبب", "value": original.reason }));
    }
    let mut seller_ids = vec![json!({ "en": "VAT No.", "ar": "الرقم الضريبي", "value": seller.vat_number })];
    if !seller.cr_number.trim().is_empty() {
        seller_ids.push(json!({ "en": "CR No.", "ar": "السجل التجاري", "value": seller.cr_number.trim() }));
    }
    let seller_view = json!({
        "title_en": "Seller", "title_ar": "البائع",
        "name": seller.name.trim(), "name_ar": seller.name_ar.trim(),
        "ids": seller_ids, "lines": address_lines(&seller.address),
    });
    let buyer_view = invoice.customer.as_ref().map(|c| {
        let ids: Vec<Value> = c
            .vat_number
            .as_deref()
            .filter(|v| !v.trim().is_empty())
            .map(|vat| json!({ "en": "VAT No.", "ar": "الرقم الضريبي", "value": vat.trim() }))
            .into_iter()
            .collect();
        let arabic = c.name.chars().any(|ch| ('\u{0600}'..='\u{06FF}').contains(&ch));
        json!({
            "title_en": "Buyer", "title_ar": "المشتري",
            "name": if arabic { "" } else { c.name.trim() },
            "name_ar": if arabic { c.name.trim() } else { "" },
            "ids": ids,
            "lines": address_lines(&c.address),
        })
    });
    let lines: Vec<Value> = invoice
        .lines
        .iter()
        .zip(&totals.lines)
        .enumerate()
        .map(|(i, (line, t))| {
            json!({
                "n": (i + 1).to_string(),
                "description": line.description,
                "quantity": line.quantity.to_string(),
                "unit_price": money(line.unit_price),
                "discount": if line.discount.is_zero() { "—".to_owned() } else { money(line.discount) },
                "vat_rate": format!("{}%", line.vat.rate),
                "vat": money(t.vat),
                "total": money(t.net.checked_add(t.vat).unwrap_or(t.net)),
            })
        })
        .collect();
    let breakdown: Vec<Value> = totals
        .breakdown
        .iter()
        .map(|b| {
            let (en, ar) = category(b.code);
            let reason = match (&b.exemption_code, &b.exemption_reason) {
                (Some(code), Some(text)) => format!("{code}: {text}"),
                (Some(code), None) => code.clone(),
                _ => String::new(),
            };
            json!({
                "label_en": en, "label_ar": ar, "reason": reason,
                "rate": format!("{}%", b.rate), "taxable": money(b.taxable), "vat": money(b.vat),
            })
        })
        .collect();
    let mut total_rows =
        vec![json!({ "en": "Subtotal", "ar": "المجموع", "value": with_currency(totals.lines_net), "strong": false })];
    if !totals.discount.is_zero() {
        total_rows.push(json!({ "en": "Discount", "ar": "الخصم", "value": format!("-{}", with_currency(totals.discount)), "strong": false }));
    }
    total_rows.push(json!({ "en": "Total excl. VAT", "ar": "الإجمالي غير شامل الضريبة", "value": with_currency(totals.net), "strong": false }));
    total_rows.push(
        json!({ "en": "VAT", "ar": "ضريبة القيمة المضافة", "value": with_currency(totals.vat), "strong": false }),
    );
    if let Some(vat_sar) = totals.vat_sar {
        total_rows.push(json!({ "en": "VAT in SAR", "ar": "الضريبة بالريال", "value": format!("{} SAR", money(vat_sar)), "strong": false }));
    }
    total_rows.push(json!({ "en": "Total incl. VAT", "ar": "الإجمالي شامل الضريبة", "value": with_currency(totals.gross), "strong": true }));
    if !totals.paid.is_zero() {
        total_rows.push(json!({ "en": "Paid", "ar": "المدفوع", "value": with_currency(totals.paid), "strong": false }));
        total_rows.push(
            json!({ "en": "Amount due", "ar": "المبلغ المستحق", "value": with_currency(totals.due), "strong": true }),
        );
    }
    let (qr_svg, qr_notes, footer) = match &invoice.einvoice {
        Some(e) => {
            let svg = qr_svg(&e.qr)?;
            let mut notes = vec![
                "ZATCA e-invoice QR code · رمز الاستجابة السريعة للفاتورة الإلكترونية".to_owned(),
                format!("Invoice counter (ICV) {} · {}", e.icv, e.subtype),
            ];
            if e.self_signed {
                notes.push("Stamped with this device's test certificate: not yet reported to ZATCA".to_owned());
            }
            (Some(svg), notes, format!("Daftar · e-invoice hash {}", e.hash))
        }
        None if invoice.is_issued() => (None, Vec::new(), "Daftar".to_owned()),
        None => (None, Vec::new(), "Daftar · draft: not a tax invoice · مسودة وليست فاتورة ضريبية".to_owned()),
    };
    Ok(json!({
        "title_en": title_en,
        "title_ar": title_ar,
        "number": number,
        "draft": !invoice.is_issued(),
        "facts": facts,
        "seller": seller_view,
        "buyer": buyer_view,
        "lines": lines,
        "breakdown": breakdown,
        "totals": total_rows,
        "qr_svg": qr_svg,
        "qr_notes": qr_notes,
        "notes": invoice.notes.trim(),
        "footer_en": footer,
    }))
}

#[cfg(test)]
mod tests {
    use super::money;

    #[test]
    fn money_is_grouped_by_thousands() {
        assert_eq!(money("1234567.5".parse().unwrap()), "1,234,567.50");
        assert_eq!(money("-1000".parse().unwrap()), "-1,000.00");
        assert_eq!(money("999.99".parse().unwrap()), "999.99");
        assert_eq!(money("0".parse().unwrap()), "0.00");
    }
}

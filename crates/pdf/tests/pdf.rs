//! Real PDFs read back with poppler's `pdftotext` and rendered with `pdftoppm`.

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{TimeZone, Utc};
use daftar_domain::invoice::{BillingReference, DocumentDiscount};
use daftar_domain::{
    Address, CustomerSnapshot, DeviceId, EInvoice, Invoice, InvoiceId, InvoiceKind, Line, LineId, SellerProfile,
    VatCategory, VatCode, compute_totals,
};
use k256::ecdsa::SigningKey;
use uuid::Uuid;

fn seller() -> SellerProfile {
    SellerProfile {
        name: "Acme Trading LLC".into(),
        name_ar: "شركة أكمي للتجارة".into(),
        vat_number: "300000000000003".into(),
        cr_number: "1010010000".into(),
        address: Address {
            street: "King Fahd Road".into(),
            building_number: "1234".into(),
            additional_number: "5678".into(),
            district: "Al Olaya".into(),
            city: "Riyadh".into(),
            postal_code: "12345".into(),
            country: "SA".into(),
        },
    }
}

fn line(n: u128, description: &str, quantity: &str, price: &str, vat: VatCategory) -> Line {
    Line {
        id: LineId::from_uuid(Uuid::from_u128(n)),
        description: description.into(),
        quantity: quantity.parse().unwrap(),
        unit_price: price.parse().unwrap(),
        discount: daftar_domain::Amount::ZERO,
        vat,
    }
}

/// An issued standard invoice, stamped as Daftar stamps it.
fn invoice(kind: InvoiceKind) -> Invoice {
    let at = Utc.with_ymd_and_hms(2026, 11, 30, 9, 15, 0).unwrap();
    let mut invoice = Invoice::draft(InvoiceId::from_uuid(Uuid::from_u128(42)), kind, at);
    invoice.customer = Some(CustomerSnapshot {
        id: None,
        name: "مؤسسة النخبة للتجارة".into(),
        vat_number: Some("399999999800003".into()),
        address: Address {
            street: "Salah Al-Din".into(),
            building_number: "1111".into(),
            district: "Al-Murooj".into(),
            city: "Riyadh".into(),
            postal_code: "12222".into(),
            ..Address::default()
        },
        email: String::new(),
        phone: String::new(),
    });
    invoice.lines = vec![
        line(1, "قلم رصاص | Pencil", "2", "2.00", VatCategory::standard()),
        line(2, "Office chair, ergonomic", "3", "1250.50", VatCategory::standard()),
        line(3, "Export freight", "1", "500.00", VatCategory::with_exemption(VatCode::Z, "VATEX-SA-34-1")),
    ];
    invoice.lines[1].discount = "150.00".parse().unwrap();
    invoice.discount = Some(DocumentDiscount {
        amount: "10.00".parse().unwrap(),
        vat: VatCategory::standard(),
        reason: "Loyalty".into(),
    });
    invoice.notes = "Payment within 30 days. شكراً لتعاملكم معنا".into();
    if kind.is_note() {
        invoice.original = Some(BillingReference {
            invoice_id: InvoiceId::from_uuid(Uuid::from_u128(1)),
            number: "A-000001".into(),
            reason: "Returned goods".into(),
        });
    }
    invoice.issue("A-000042".into(), at, DeviceId::from_uuid(Uuid::nil())).unwrap();
    let seller = seller();
    let totals = compute_totals(&invoice).unwrap();
    let key = SigningKey::from_slice(&[5u8; 32]).unwrap();
    let certificate = daftar_zatca::cert::self_signed(&key, &seller.name, &seller.vat_number, at).unwrap();
    let subtype = daftar_zatca::ubl::Subtype::of(kind, Some(daftar_zatca::ubl::Subtype::Standard));
    let issue = daftar_zatca::ubl::Issue {
        invoice: &invoice,
        seller: &seller,
        totals: &totals,
        subtype,
        icv: 42,
        pih: daftar_zatca::FIRST_PIH,
    };
    let stamped = daftar_zatca::ubl::stamp(&issue, &key, &certificate, at).unwrap();
    invoice.einvoice = Some(EInvoice {
        icv: 42,
        hash: stamped.hash,
        pih: daftar_zatca::FIRST_PIH.into(),
        qr: stamped.qr,
        subtype: subtype.as_str().into(),
        self_signed: true,
        xml: stamped.xml,
    });
    invoice
}

fn out_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("daftar-pdf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn pdftotext(pdf: &Path) -> String {
    let output =
        Command::new("pdftotext").arg("-layout").arg(pdf).arg("-").output().expect("pdftotext (poppler-utils) runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn a_bilingual_tax_invoice_reads_back_with_its_arabic_in_logical_order_and_every_amount() {
    let invoice = invoice(InvoiceKind::Standard);
    let pdf = daftar_pdf::render(&invoice, &seller()).unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    let dir = out_dir();
    let file = dir.join("invoice.pdf");
    std::fs::write(&file, &pdf).unwrap();
    let text = pdftotext(&file);
    // Names without the lam-alef ligature: poppler writes a ligature glyph's two letters in
    // reverse inside right-to-left runs (the PDF's ToUnicode maps it to lam, alef in logical
    // order), so "الإصدار" reads back as "اإلصدار"; any other Arabic reads back as written.
    for expected in [
        "Tax Invoice",
        "فاتورة ضريبية",
        "شركة أكمي للتجارة",
        "مؤسسة النخبة للتجارة",
        "A-000042",
        "300000000000003",
        "399999999800003",
    ] {
        assert!(text.contains(expected), "{expected:?} is not in the text:\n{text}");
    }
    let totals = compute_totals(&invoice).unwrap();
    let mut amounts = vec![totals.lines_net, totals.discount, totals.net, totals.vat, totals.gross];
    for (line, t) in invoice.lines.iter().zip(&totals.lines) {
        amounts.extend([line.unit_price, t.vat, t.net.checked_add(t.vat).unwrap()]);
    }
    for b in &totals.breakdown {
        amounts.extend([b.taxable, b.vat]);
    }
    for amount in amounts {
        let printed = daftar_pdf::money(amount);
        assert!(text.contains(&printed), "amount {printed} is not in the text:\n{text}");
    }
    if let Ok(dir) = std::env::var("DAFTAR_SCREENSHOTS") {
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("pdftoppm")
            .args(["-png", "-r", "80", "-singlefile"])
            .arg(&file)
            .arg(Path::new(&dir).join("invoice-pdf"))
            .status()
            .expect("pdftoppm runs");
        assert!(status.success());
    }
}

#[test]
fn titles_follow_the_kind() {
    let mut simplified = invoice(InvoiceKind::Simplified);
    simplified.customer = None;
    let dir = out_dir();
    let file = dir.join("simplified.pdf");
    std::fs::write(&file, daftar_pdf::render(&simplified, &seller()).unwrap()).unwrap();
    let text = pdftotext(&file);
    assert!(text.contains("Simplified Tax Invoice") && text.contains("فاتورة ضريبية مبسطة"), "{text}");
    let note = invoice(InvoiceKind::CreditNote);
    let file = dir.join("credit.pdf");
    std::fs::write(&file, daftar_pdf::render(&note, &seller()).unwrap()).unwrap();
    let text = pdftotext(&file);
    assert!(text.contains("Credit Note") && text.contains("إشعار دائن") && text.contains("Returned goods"), "{text}");
    let mut draft = Invoice::draft(InvoiceId::from_uuid(Uuid::from_u128(7)), InvoiceKind::Simplified, Utc::now());
    draft.lines = vec![line(1, "Tea", "1", "5", VatCategory::standard())];
    let file = dir.join("draft.pdf");
    std::fs::write(&file, daftar_pdf::render(&draft, &seller()).unwrap()).unwrap();
    assert!(pdftotext(&file).contains("DRAFT"));
}

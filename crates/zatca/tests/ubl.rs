//! The e-invoices Daftar writes: each kind is stamped with a self-signed certificate, verifies
//! with the same checks ZATCA's own samples pass, validates against the UBL 2.1 schemas with
//! `xmllint`, and chains (each PIH is the previous invoice's hash).

use std::path::Path;
use std::process::Command;

use chrono::{DateTime, TimeZone, Utc};
use daftar_domain::invoice::{BillingReference, DocumentDiscount, Payment, PaymentMethod};
use daftar_domain::{
    Address, Currency, CustomerSnapshot, DeviceId, Invoice, InvoiceId, InvoiceKind, Line, SellerProfile, VatCategory,
    VatCode, compute_totals,
};
use daftar_zatca::cert::{Certificate, self_signed};
use daftar_zatca::ubl::{Issue, Subtype, stamp};
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

fn customer() -> CustomerSnapshot {
    CustomerSnapshot {
        id: None,
        name: "Fatoora Samples LTD & Co <B2B>".into(),
        vat_number: Some("399999999800003".into()),
        address: Address {
            street: "Salah Al-Din".into(),
            building_number: "1111".into(),
            additional_number: String::new(),
            district: "Al-Murooj".into(),
            city: "Riyadh".into(),
            postal_code: "12222".into(),
            country: "SA".into(),
        },
        email: String::new(),
        phone: String::new(),
    }
}

fn line(n: u128, description: &str, quantity: &str, price: &str, vat: VatCategory) -> Line {
    Line {
        id: daftar_domain::LineId::from_uuid(Uuid::from_u128(n)),
        description: description.into(),
        quantity: quantity.parse().unwrap(),
        unit_price: price.parse().unwrap(),
        discount: daftar_domain::Amount::ZERO,
        vat,
    }
}

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 9, 15, 0).unwrap()
}

fn issued(kind: InvoiceKind, n: u128, edit: impl FnOnce(&mut Invoice)) -> Invoice {
    let mut invoice = Invoice::draft(InvoiceId::from_uuid(Uuid::from_u128(n)), kind, at());
    invoice.customer = Some(customer());
    invoice.lines = vec![
        line(1, "قلم رصاص | Pencil", "2", "2.00", VatCategory::standard()),
        line(2, "Notebook A4", "3.5", "10.10", VatCategory::standard()),
    ];
    edit(&mut invoice);
    invoice.issue(format!("INV-{n:06}"), at(), DeviceId::from_uuid(Uuid::nil())).unwrap();
    invoice
}

fn xmllint(xml: &str, name: &str) {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemas/UBL2.1/xsd/maindoc/UBL-Invoice-2.1.xsd");
    let file = std::env::temp_dir().join(format!("daftar-zatca-{}-{name}.xml", std::process::id()));
    std::fs::write(&file, xml).unwrap();
    let output = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&schema)
        .arg(&file)
        .output()
        .expect("xmllint (Debian package libxml2-utils) runs");
    let _ = std::fs::remove_file(&file);
    assert!(output.status.success(), "{name} does not validate:\n{}\n{xml}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn every_kind_verifies_validates_and_chains() {
    let key = SigningKey::from_slice(&[5u8; 32]).unwrap();
    let seller = seller();
    let certificate = self_signed(&key, &seller.name, &seller.vat_number, at()).unwrap();
    let note = |invoice: &mut Invoice| {
        invoice.original = Some(BillingReference {
            invoice_id: InvoiceId::from_uuid(Uuid::from_u128(1)),
            number: "INV-000001".into(),
            reason: "Returned goods | بضاعة مرتجعة".into(),
        })
    };
    let documents: Vec<(&str, Invoice, Subtype)> = vec![
        ("standard", issued(InvoiceKind::Standard, 1, |_| {}), Subtype::Standard),
        (
            "simplified-no-buyer",
            issued(InvoiceKind::Simplified, 2, |i| {
                i.customer = None;
                i.payments = vec![Payment {
                    id: daftar_domain::PaymentId::from_uuid(Uuid::from_u128(9)),
                    amount: "10.00".parse().unwrap(),
                    date: at().date_naive(),
                    method: PaymentMethod::Card,
                    reference: String::new(),
                }];
            }),
            Subtype::Simplified,
        ),
        ("credit-note", issued(InvoiceKind::CreditNote, 3, |i| note(i)), Subtype::Standard),
        ("debit-note", issued(InvoiceKind::DebitNote, 4, |i| note(i)), Subtype::Simplified),
        (
            "zero-exempt-discount-usd",
            issued(InvoiceKind::Standard, 5, |i| {
                i.currency = "USD".parse::<Currency>().unwrap();
                i.exchange_rate = Some("3.75".parse().unwrap());
                i.lines.push(line(
                    3,
                    "Export freight",
                    "1",
                    "500.00",
                    VatCategory::with_exemption(VatCode::Z, "VATEX-SA-34-1"),
                ));
                i.lines.push(line(4, "Bank fee", "1", "20.00", VatCategory::with_exemption(VatCode::E, "VATEX-SA-29")));
                i.lines[1].discount = "1.35".parse().unwrap();
                i.discount = Some(DocumentDiscount {
                    amount: "5.00".parse().unwrap(),
                    vat: VatCategory::standard(),
                    reason: "Loyalty".into(),
                });
                i.notes = "Thank you & see you <soon>".into();
            }),
            Subtype::Standard,
        ),
    ];
    let mut pih = daftar_zatca::FIRST_PIH.to_owned();
    for (icv, (name, invoice, subtype)) in documents.iter().enumerate() {
        let totals = compute_totals(invoice).unwrap();
        let issue =
            Issue { invoice, seller: &seller, totals: &totals, subtype: *subtype, icv: icv as u64 + 1, pih: &pih };
        let stamped = stamp(&issue, &key, &certificate, at()).unwrap();
        xmllint(&stamped.xml, name);
        let verified =
            daftar_zatca::verify::verify(&stamped.xml).unwrap_or_else(|e| panic!("{name}: {e}\n{}", stamped.xml));
        assert!(verified.self_signed, "{name}: a self-signed certificate is reported as such");
        assert_eq!(verified.hash, stamped.hash);
        assert_eq!(verified.pih, pih, "{name}: chained to the previous invoice");
        assert_eq!(verified.icv, (icv + 1).to_string());
        assert_eq!(verified.seller_name, "شركة أكمي للتجارة", "RegistrationName carries the Arabic legal name");
        assert_eq!(verified.subtype, subtype.as_str());
        assert_eq!(verified.issue_time, "12:15:00", "{name}: issue time is Riyadh time (UTC+3)");
        let fields = daftar_zatca::qr::decode(&stamped.qr).unwrap();
        assert_eq!(fields[0].1, "شركة أكمي للتجارة".as_bytes(), "QR tag 1 is the Arabic legal name");
        assert_eq!(fields.len(), if *subtype == Subtype::Simplified { 9 } else { 8 });
        assert_eq!(String::from_utf8_lossy(&fields[3].1), totals.gross.to_string());
        // Any change to what the hash covers is caught.
        let tampered = stamped
            .xml
            .replacen("<cbc:PriceAmount currencyID=", "<cbc:PriceAmount  currencyID=", 1)
            .replacen(">2.00</cbc:PriceAmount>", ">2.01</cbc:PriceAmount>", 1);
        assert!(daftar_zatca::verify::verify(&tampered).is_err(), "{name}: a changed price is caught");
        pih = stamped.hash.clone();
        if *name == "zero-exempt-discount-usd" {
            assert!(stamped.xml.contains("<cbc:TaxAmount currencyID=\"SAR\">"), "a SAR tax total besides the USD one");
            assert!(stamped.xml.contains("<cbc:TaxExemptionReasonCode>VATEX-SA-34-1</cbc:TaxExemptionReasonCode>"));
            assert!(stamped.xml.contains("Thank you &amp; see you &lt;soon&gt;"));
            assert_eq!(verified.vat_total, totals.vat_sar.unwrap().to_string(), "QR tag 5 is the VAT total in SAR");
        }
        if invoice.kind.is_note() {
            assert!(stamped.xml.contains("<cbc:ID>INV-000001</cbc:ID>"), "{name}: billing reference");
            assert!(stamped.xml.contains("<cbc:InstructionNote>Returned goods | بضاعة مرتجعة</cbc:InstructionNote>"));
        }
    }
    // The certificate reads back from the document.
    let reread = Certificate::from_base64(&certificate.base64()).unwrap();
    assert_eq!(reread.digest(), certificate.digest());
}

//! `daftar-zatca-bench`: what issuing an e-invoice and printing it cost.
//!
//! - Stamping (UBL XML, invoice hash, ECDSA signature, QR) per invoice, and the whole
//!   `issue_invoice` (stamping plus the store's transaction), beside a floor measured in the
//!   same run: one ECDSA signature over the SHA-256 of the same XML, the irreducible crypto.
//! - The bilingual PDF per invoice, beside a floor: Typst typesetting one line of text with
//!   the same fonts into a PDF.
//!
//! ```text
//! cargo build --release -p daftar-bench
//! "$CARGO_TARGET_DIR"/release/daftar-zatca-bench [--invoices 2000] [--pdfs 200] [--write docs/BENCHMARKS.md]
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::Utc;
use daftar_domain::{Address, Customer, SellerProfile, compute_totals};
use daftar_store::{InitOptions, KeyChoice, NewInvoice, Store, SystemClock};
use k256::ecdsa::signature::Signer;

#[path = "report.rs"]
mod report;

#[path = "fixtures.rs"]
mod fixtures;
use fixtures::{customer, invoice, line_input};

struct Args {
    invoices: usize,
    pdfs: usize,
    write: Option<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args { invoices: 2000, pdfs: 200, write: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--invoices" => args.invoices = value.parse()?,
            "--pdfs" => args.pdfs = value.parse()?,
            "--write" => args.write = Some(PathBuf::from(value)),
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok(args)
}

fn seller() -> SellerProfile {
    SellerProfile {
        name: "Bench Trading Co".into(),
        name_ar: "شركة الاختبار للتجارة".into(),
        vat_number: "300000000000003".into(),
        cr_number: "1010010000".into(),
        address: Address {
            street: "King Fahd Road".into(),
            building_number: "1234".into(),
            additional_number: String::new(),
            district: "Al Olaya".into(),
            city: "Riyadh".into(),
            postal_code: "12345".into(),
            country: "SA".into(),
        },
    }
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let seller = seller();
    let customers: Vec<Customer> = (0..50).map(customer).collect();
    let key = k256::ecdsa::SigningKey::from_slice(&[7u8; 32])?;
    let certificate = daftar_zatca::cert::self_signed(&key, &seller.name, &seller.vat_number, Utc::now())?;

    // Stamping alone, and its floor.
    let mut stamping = Vec::with_capacity(args.invoices);
    let mut floor = Vec::with_capacity(args.invoices);
    let mut pih = daftar_zatca::FIRST_PIH.to_owned();
    for n in 0..args.invoices {
        let mut draft = invoice(n, &customers);
        draft.lines.truncate(n % 10 + 1);
        draft.issue(format!("B-{n:06}"), Utc::now(), daftar_domain::DeviceId::from_uuid(uuid::Uuid::nil()))?;
        let totals = compute_totals(&draft)?;
        let issue = daftar_zatca::ubl::Issue {
            invoice: &draft,
            seller: &seller,
            totals: &totals,
            subtype: daftar_zatca::ubl::Subtype::Standard,
            icv: n as u64 + 1,
            pih: &pih,
        };
        let start = Instant::now();
        let stamped = daftar_zatca::ubl::stamp(&issue, &key, &certificate, Utc::now())?;
        stamping.push(start.elapsed());
        let start = Instant::now();
        let digest = ring::digest::digest(&ring::digest::SHA256, stamped.xml.as_bytes());
        let signature: k256::ecdsa::Signature = key.sign(digest.as_ref());
        floor.push(start.elapsed());
        std::hint::black_box(signature);
        pih = stamped.hash;
    }
    stamping.sort();
    floor.sort();

    // The whole issue through the store (a real SQLite file, passphrase key file).
    let dir = tempfile::tempdir()?;
    let (mut store, _) = Store::init(
        &dir.path().join("data"),
        InitOptions {
            seller: seller.clone(),
            series: None,
            key: KeyChoice::Passphrase("benchmark passphrase".into()),
            device_name: "bench".into(),
            member: None,
            existing: None,
        },
        Arc::new(SystemClock),
    )?;
    let mut issuing = Vec::new();
    let ids: Vec<_> = (0..args.invoices.min(1000))
        .map(|n| {
            let lines = (0..n % 10 + 1).map(|i| line_input(n, i)).collect();
            store.create_invoice(NewInvoice { lines, ..Default::default() }).map(|i| i.id)
        })
        .collect::<Result<_, _>>()?;
    for id in ids {
        let start = Instant::now();
        store.issue_invoice(id)?;
        issuing.push(start.elapsed());
    }
    issuing.sort();

    // PDFs, and their floor.
    let mut pdf = Vec::new();
    let mut pdf_floor = Vec::new();
    let floor_engine = typst_as_lib::TypstEngine::builder()
        .main_file("#set text(font: (\"Noto Sans\", \"Noto Sans Arabic\"))\nInvoice فاتورة")
        .fonts(daftar_pdf::FONTS)
        .build();
    let first: daftar_domain::InvoiceId = store.list_invoices(&Default::default())?[0].id.parse()?;
    let _ = daftar_pdf::render(&store.invoice(first)?, &seller)?; // parses the fonts once
    let summaries =
        store.list_invoices(&daftar_store::InvoiceQuery { limit: Some(args.pdfs), ..Default::default() })?;
    for summary in summaries {
        let invoice = store.invoice(summary.id.parse()?)?;
        let start = Instant::now();
        let bytes = daftar_pdf::render(&invoice, &seller)?;
        pdf.push(start.elapsed());
        std::hint::black_box(bytes);
        let start = Instant::now();
        let document = floor_engine.compile().output.map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let bytes = typst_pdf::pdf(&document, &Default::default()).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        pdf_floor.push(start.elapsed());
        std::hint::black_box(bytes);
    }
    pdf.sort();
    pdf_floor.sort();

    let ratio = |a: Duration, b: Duration| format!("{:.1}×", a.as_secs_f64() / b.as_secs_f64());
    let rows = [
        format!(
            "| stamp one invoice (XML, hash, signature, QR), p50 | {} | {} | {} | |",
            ms(percentile(&stamping, 50)),
            ms(percentile(&floor, 50)),
            ratio(percentile(&stamping, 50), percentile(&floor, 50))
        ),
        format!(
            "| stamp one invoice, p99 | {} | {} | {} | < 5 ms |",
            ms(percentile(&stamping, 99)),
            ms(percentile(&floor, 99)),
            ratio(percentile(&stamping, 99), percentile(&floor, 99))
        ),
        format!(
            "| `issue_invoice` (stamp + store transaction), p50 | {} | {} | {} | |",
            ms(percentile(&issuing, 50)),
            ms(percentile(&floor, 50)),
            ratio(percentile(&issuing, 50), percentile(&floor, 50))
        ),
        format!(
            "| `issue_invoice`, p99 | {} | {} | {} | |",
            ms(percentile(&issuing, 99)),
            ms(percentile(&floor, 99)),
            ratio(percentile(&issuing, 99), percentile(&floor, 99))
        ),
        format!(
            "| PDF of one invoice (1–10 lines), p50 | {} | {} | {} | < 150 ms |",
            ms(percentile(&pdf, 50)),
            ms(percentile(&pdf_floor, 50)),
            ratio(percentile(&pdf, 50), percentile(&pdf_floor, 50))
        ),
        format!(
            "| PDF of one invoice, p99 | {} | {} | {} | |",
            ms(percentile(&pdf, 99)),
            ms(percentile(&pdf_floor, 99)),
            ratio(percentile(&pdf, 99), percentile(&pdf_floor, 99))
        ),
    ];
    println!("| figure | ours | floor | ratio | goal |\n|---|---|---|---|---|");
    for row in &rows {
        println!("{row}");
    }
    if let Some(path) = &args.write {
        let section = format!(
            "Measured {} with `cargo build --release -p daftar-bench && \"$CARGO_TARGET_DIR\"/release/daftar-zatca-bench --invoices {} --pdfs {} --write docs/BENCHMARKS.md` (2 cores). Floors, measured in the same run: for stamping, one ECDSA (secp256k1) signature over the SHA-256 of the same XML; for PDFs, Typst typesetting one line of text with the same fonts into a PDF.\n\n| figure | ours | floor | ratio | goal |\n|---|---|---|---|---|\n{}",
            Utc::now().format("%Y-%m-%d"),
            args.invoices,
            args.pdfs,
            rows.join("\n")
        );
        report::write_section(path, "zatca-bench", "ZATCA e-invoices and PDFs", &section)?;
    }
    Ok(())
}

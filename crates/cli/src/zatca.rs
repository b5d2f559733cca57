//! `daftar zatca …` and the e-invoice views of `daftar invoice`: ZATCA phase 2 from the command
//! line. `hash` and `verify` work on any file, without a workspace.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use daftar_domain::{EInvoice, Invoice};
use daftar_store::Store;
use serde_json::json;

use crate::output::print_json;

/// The names of the QR code's TLV tags, as ZATCA's specification gives them.
const QR_TAGS: [&str; 9] = [
    "seller name",
    "VAT number",
    "time stamp",
    "total with VAT",
    "VAT total",
    "invoice hash",
    "signature",
    "public key",
    "certificate signature",
];

fn read(file: &Path) -> Result<String> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        anyhow!("{} is not UTF-8 text (byte {}): not an e-invoice", file.display(), e.utf8_error().valid_up_to())
    })
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, then a rename, so a
/// crash never leaves half a PDF under the requested name.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| anyhow!("{} is not a file name", path.display()))?;
    let temporary = dir.join(format!(".{}.partial", name.to_string_lossy()));
    let mut file = std::fs::File::create(&temporary).with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// `daftar zatca hash FILE`: the invoice hash of any e-invoice, base64.
pub fn hash(json: bool, file: &Path) -> Result<()> {
    let xml = read(file)?;
    let hash = daftar_zatca::invoice_hash(&xml).with_context(|| format!("{}", file.display()))?;
    if json {
        print_json(&json!({ "file": file, "hash": hash }));
    } else {
        println!("{hash}");
    }
    Ok(())
}

/// `daftar zatca verify FILE`: checks any e-invoice; exits non-zero when it does not verify.
pub fn verify(json: bool, file: &Path) -> Result<bool> {
    let xml = read(file)?;
    match daftar_zatca::verify::verify(&xml) {
        Ok(verified) => {
            if json {
                let mut value = serde_json::to_value(&verified).expect("serialises");
                value["file"] = json!(file);
                value["valid"] = json!(true);
                print_json(&value);
            } else {
                println!(
                    "{}: valid e-invoice {} ({} {}, ICV {})",
                    file.display(),
                    verified.number,
                    verified.subtype,
                    verified.type_code,
                    verified.icv
                );
                println!(
                    "  seller {} (VAT {}), issued {}T{}",
                    verified.seller_name, verified.seller_vat_number, verified.issue_date, verified.issue_time
                );
                println!("  total with VAT {}, VAT {}", verified.total_with_vat, verified.vat_total);
                println!("  hash {}", verified.hash);
                println!("  checked: {}", verified.checks.join(", "));
                if verified.self_signed {
                    println!(
                        "  note: stamped with a self-signed certificate, not one ZATCA issued: not accepted by ZATCA"
                    );
                } else {
                    println!("  certificate issued by {}", verified.certificate_issuer);
                }
            }
            Ok(true)
        }
        Err(error) => {
            let problems: Vec<String> = match &error {
                daftar_zatca::verify::VerifyError::Failed(list) => list.clone(),
                other => vec![other.to_string()],
            };
            if json {
                print_json(&json!({ "file": file, "valid": false, "problems": problems }));
            } else {
                eprintln!("{}: NOT a valid e-invoice:", file.display());
                for p in &problems {
                    eprintln!("  - {p}");
                }
            }
            Ok(false)
        }
    }
}

fn einvoice(invoice: &Invoice) -> Result<&EInvoice> {
    let number = invoice.number.as_deref().unwrap_or("(draft)");
    match (&invoice.einvoice, invoice.is_issued()) {
        (Some(e), _) => Ok(e),
        (None, false) => {
            bail!("invoice {} is a draft; issue it first (daftar invoice issue {})", invoice.id, invoice.id)
        }
        (None, true) => bail!("invoice {number} was issued before Daftar stamped e-invoices and has no e-invoice"),
    }
}

/// `daftar invoice xml ID`: the signed XML (or ZATCA's cleared one), byte for byte.
pub fn xml(invoice: &Invoice, cleared: Option<&str>) -> Result<()> {
    let e = einvoice(invoice)?;
    use std::io::Write;
    let xml = cleared.unwrap_or(&e.xml);
    std::io::stdout().lock().write_all(xml.as_bytes()).context("writing the XML")?;
    Ok(())
}

/// `daftar invoice qr ID`: the QR payload and its fields.
pub fn qr(json: bool, invoice: &Invoice) -> Result<()> {
    let e = einvoice(invoice)?;
    let fields = daftar_zatca::qr::decode(&e.qr)?;
    let shown: Vec<serde_json::Value> = fields
        .iter()
        .map(|(tag, value)| {
            let name = QR_TAGS.get(usize::from(*tag).wrapping_sub(1)).copied().unwrap_or("unknown");
            let text =
                if matches!(tag, 8 | 9) { BASE64.encode(value) } else { String::from_utf8_lossy(value).into_owned() };
            json!({ "tag": tag, "name": name, "value": text })
        })
        .collect();
    if json {
        print_json(&json!({ "qr": e.qr, "fields": shown }));
    } else {
        println!("{}", e.qr);
        for f in shown {
            println!(
                "  {} {}: {}",
                f["tag"],
                f["name"].as_str().unwrap_or_default(),
                f["value"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// `daftar zatca status`.
pub fn status(json: bool, store: &Store) -> Result<()> {
    let status = store.zatca_status()?;
    let queue = store.zatca_submissions(None)?;
    if json {
        let mut value = serde_json::to_value(&status).expect("serialises");
        value["submissions"] = serde_json::to_value(&queue).expect("serialises");
        print_json(&value);
        return Ok(());
    }
    let stage = match status.stage {
        daftar_store::EgsStage::SelfSigned => {
            "not onboarded: stamping with a self-signed test certificate (e-invoices are not reportable; run daftar zatca onboard --otp ...)"
        }
        daftar_store::EgsStage::Compliance => "onboarding: compliance certificate",
        daftar_store::EgsStage::Production => "onboarded: production certificate",
    };
    println!("ZATCA: {stage}");
    if let Some(environment) = &status.environment {
        println!("Environment: {environment}");
    }
    if let (Some(issuer), Some(expires)) = (&status.certificate_issuer, status.certificate_expires) {
        println!("Certificate: issued by {issuer}, expires {}", expires.format("%Y-%m-%d"));
    }
    println!("Invoice counter (ICV): {}; next PIH {}", status.icv, status.next_pih);
    println!(
        "E-invoices: {} pending, {} reported, {} cleared, {} rejected, {} not reportable{}",
        status.pending,
        status.reported,
        status.cleared,
        status.rejected,
        status.not_reportable,
        if status.overdue > 0 { format!("; {} OVERDUE (older than 24 hours)", status.overdue) } else { String::new() }
    );
    for s in queue.iter().rev().take(20) {
        let error = s.last_error.as_deref().map(|e| format!("  ({e})")).unwrap_or_default();
        println!(
            "  {:>6}  {:<12} {:<10} {:<14} {}{error}",
            s.icv,
            s.number,
            s.subtype,
            s.status,
            s.issued_at.format("%Y-%m-%d %H:%M")
        );
    }
    Ok(())
}

/// `daftar zatca onboard`.
pub fn onboard(json: bool, store: &mut Store, options: &daftar_einvoicing::OnboardOptions) -> Result<()> {
    let report = daftar_einvoicing::onboard(store, options)?;
    if json {
        print_json(&report);
    } else {
        println!("Onboarded with ZATCA ({}, {}).", report.environment, report.api_url);
        for check in &report.checks {
            println!("  compliance check {}: {}", check.document, check.status);
        }
        println!(
            "Production certificate issued by {}, valid until {}.",
            report.certificate_issuer,
            report.certificate_expires.format("%Y-%m-%d")
        );
        println!(
            "E-invoices issued from now on are cleared or reported by `daftar zatca submit` (the app does it by itself)."
        );
    }
    Ok(())
}

/// `daftar zatca submit`: exits non-zero when the round stopped early or something was rejected.
pub fn submit(json: bool, store: &mut Store, limit: usize) -> Result<()> {
    let report = daftar_einvoicing::submit_pending(store, limit)?;
    let failed = report.stopped.is_some() || report.submitted.iter().any(|s| s.status == "rejected");
    if json {
        // A failed command prints only its error (the contract of every command).
        if !failed {
            print_json(&report);
        }
    } else {
        if report.submitted.is_empty() && report.stopped.is_none() {
            println!("Nothing to submit.");
        }
        for s in &report.submitted {
            let warn = if s.warnings { " (with warnings)" } else { "" };
            println!("  {:<12} ICV {:>6}: {}{warn}", s.number, s.icv, s.status);
            for m in &s.messages {
                println!("      {m}");
            }
        }
        println!("{} still pending.", report.pending);
    }
    if let Some(reason) = &report.stopped {
        bail!("submission stopped: {reason}");
    }
    if report.submitted.iter().any(|s| s.status == "rejected") {
        bail!(
            "ZATCA rejected {} e-invoice(s); see daftar zatca status",
            report.submitted.iter().filter(|s| s.status == "rejected").count()
        );
    }
    Ok(())
}

//! `daftar zatca` and the e-invoices `daftar invoice issue` stamps, through the real binary.

mod common;

use std::path::{Path, PathBuf};

use common::{Daftar, files};
use serde_json::Value;

fn samples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../zatca/tests/samples");
    let mut out: Vec<PathBuf> = files(&dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "xml")).collect();
    out.sort();
    out
}

/// The digest ZATCA's SDK wrote into the sample for the invoice itself.
fn embedded_hash(xml: &str) -> String {
    let at = xml.find("Id=\"invoiceSignedData\"").unwrap();
    let start = xml[at..].find("<ds:DigestValue>").unwrap() + at + "<ds:DigestValue>".len();
    let end = xml[start..].find('<').unwrap() + start;
    xml[start..end].trim().to_owned()
}

#[test]
fn hash_and_verify_reproduce_zatcas_19_samples_and_refuse_a_changed_one() {
    let d = Daftar::new();
    let samples = samples();
    assert_eq!(samples.len(), 19);
    for path in &samples {
        let file = path.to_str().unwrap();
        let xml = std::fs::read_to_string(path).unwrap();
        let hashed = d.json(&["zatca", "hash", file]);
        assert_eq!(hashed["hash"], embedded_hash(&xml), "{file}");
        let verified = d.json(&["zatca", "verify", file]);
        assert_eq!(verified["valid"], true, "{file}");
        // One character of the payable amount changed: refused, with the reason, exit 1.
        let at = xml.find("<cbc:PayableAmount").unwrap();
        let digit = xml[at..].find('>').unwrap() + at + 1;
        let mut changed = xml.clone();
        let old = &xml[digit..digit + 1];
        changed.replace_range(digit..digit + 1, if old == "9" { "8" } else { "9" });
        let tampered = d.dir.path().join("tampered.xml");
        std::fs::write(&tampered, changed).unwrap();
        let output = d.command().args(["--json", "zatca", "verify", tampered.to_str().unwrap()]).output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{file}: a changed amount exits 1");
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(report["valid"], false);
        assert!(report["problems"][0].as_str().unwrap().contains("changed after it was signed"), "{report}");
    }
    // Not an e-invoice at all.
    let junk = d.dir.path().join("junk.xml");
    std::fs::write(&junk, "<Invoice><cbc:ID>1</Invoice>").unwrap();
    let error = d.fails(&["zatca", "hash", junk.to_str().unwrap()]);
    assert!(error["message"].as_str().unwrap().contains("malformed"), "{error}");
    let missing = d.fails(&["zatca", "hash", "/nonexistent/file.xml"]);
    assert!(missing["message"].as_str().unwrap().contains("cannot read /nonexistent/file.xml"), "{missing}");
}

fn issue(d: &Daftar, args: &[&str]) -> Value {
    let mut create = vec!["invoice", "create"];
    create.extend_from_slice(args);
    let id = d.json(&create)["id"].as_str().unwrap().to_owned();
    d.json(&["invoice", "issue", &id])
}

#[test]
fn issued_invoices_are_stamped_chained_and_verifiable() {
    let d = Daftar::init();
    let buyer = d.customer("Beta Trading", Some("399999999800003"));
    let first = issue(&d, &["--customer", &buyer, "--line", "Pencil|2|2.00", "--line", "Notebook|3.5|10.10"]);
    let second = issue(&d, &["--line", "Tea|1|11.50"]);
    let note = issue(
        &d,
        &[
            "--kind",
            "credit_note",
            "--original",
            first["id"].as_str().unwrap(),
            "--reason",
            "Returned",
            "--line",
            "Pencil|1|2",
        ],
    );
    let e1 = &first["einvoice"];
    let e2 = &second["einvoice"];
    let e3 = &note["einvoice"];
    assert_eq!((e1["icv"].as_u64(), e2["icv"].as_u64(), e3["icv"].as_u64()), (Some(1), Some(2), Some(3)));
    assert_eq!(e1["pih"], daftar_first_pih());
    assert_eq!(e2["pih"], e1["hash"], "each PIH is the previous e-invoice's hash");
    assert_eq!(e3["pih"], e2["hash"]);
    assert_eq!(
        (e1["subtype"].as_str(), e2["subtype"].as_str(), e3["subtype"].as_str()),
        (Some("standard"), Some("simplified"), Some("standard"))
    );
    assert_eq!(e1["self_signed"], true);
    assert!(e1.get("xml").is_none(), "the JSON view leaves the XML to `invoice xml`");
    for invoice in [&first, &second, &note] {
        let id = invoice["id"].as_str().unwrap();
        let xml = d.run(&["invoice", "xml", id]);
        assert!(xml.status.success());
        let file = d.dir.path().join(format!("{id}.xml"));
        std::fs::write(&file, &xml.stdout).unwrap();
        let verified = d.json(&["zatca", "verify", file.to_str().unwrap()]);
        assert_eq!(verified["hash"], invoice["einvoice"]["hash"]);
        assert_eq!(verified["seller_name"], "شركة أكمي", "the Arabic legal name is the RegistrationName");
        assert_eq!(verified["self_signed"], true);
        assert_eq!(d.json(&["zatca", "hash", file.to_str().unwrap()])["hash"], invoice["einvoice"]["hash"]);
        let qr = d.json(&["invoice", "qr", id]);
        assert_eq!(qr["fields"][0]["value"], "شركة أكمي");
        assert_eq!(qr["fields"][3]["value"], invoice["totals"]["gross"]);
    }
    let status = d.json(&["zatca", "status"]);
    assert_eq!(status["stage"], "self_signed");
    assert_eq!(status["icv"], 3);
    assert_eq!(status["next_pih"], e3["hash"]);
    assert_eq!(status["not_reportable"], 3, "{status}");
    assert_eq!(status["submissions"].as_array().unwrap().len(), 3);
    // `store verify` checks the chain (ICV 1..3, each PIH the previous hash, XML as signed).
    let verified = d.json(&["store", "verify"]);
    assert_eq!(verified["problems"].as_array().map(Vec::len), Some(0), "{verified}");
    // A draft has no e-invoice.
    let draft = d.json(&["invoice", "create", "--line", "X|1|1"])["id"].as_str().unwrap().to_owned();
    let error = d.fails(&["invoice", "xml", &draft]);
    assert!(error["message"].as_str().unwrap().contains("is a draft; issue it first"), "{error}");
}

fn daftar_first_pih() -> &'static str {
    "NWZlY2ViNjZmZmM4NmYzOGQ5NTI3ODZjNmQ2OTZjNzljMmRiYzIzOWRkNGU5MWI0NjcyOWQ3M2EyN2ZiNTdlOQ=="
}

#[test]
fn an_invoice_that_breaks_a_rule_is_refused_at_issue_with_the_rule_id_and_uses_no_number() {
    let d = Daftar::init();
    let no_vat = d.customer("Walk-in Co", None);
    let refusals = [
        (vec!["--kind", "standard", "--customer", no_vat.as_str(), "--line", "X|1|5"], "BR-KSA-81", "VAT number"),
        (vec!["--line", "Export|1|5|Z"], "BR-KSA-69", "exemption reason"),
        (vec!["--line", "Loan fee|1|5|E"], "BR-KSA-23", "exemption reason"),
    ];
    for (args, rule, words) in refusals {
        let mut create = vec!["invoice", "create"];
        create.extend_from_slice(&args);
        let id = d.json(&create)["id"].as_str().unwrap().to_owned();
        let error = d.fails(&["invoice", "issue", &id]);
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(&format!("{rule}: ")) && message.contains(words), "{rule}: {message}");
        assert_eq!(error["code"], "invalid");
        assert_eq!(d.json(&["invoice", "show", &id])["status"], "draft", "nothing was issued");
    }
    // A credit note without its original cannot even be created.
    let error = d.fails(&["invoice", "create", "--kind", "credit_note", "--line", "X|1|1"]);
    assert!(error["message"].as_str().unwrap().starts_with("BR-KSA-56: "), "{error}");
    // No number and no counter value was used by the refusals.
    assert_eq!(d.json(&["zatca", "status"])["icv"], 0);
    let ok = issue(&d, &["--line", "Tea|1|5"]);
    assert_eq!(ok["number"], "A-000001");
    assert_eq!(ok["einvoice"]["icv"], 1);
}

#[test]
fn invoice_pdf_writes_a_bilingual_pdf_with_the_arabic_seller_name_and_totals() {
    let d = Daftar::init();
    let invoice = issue(&d, &["--line", "Tea|2|11.50", "--line", "Coffee beans|1|1234.56"]);
    let id = invoice["id"].as_str().unwrap();
    let file = d.dir.path().join("out/invoice.pdf");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let written = d.json(&["invoice", "pdf", id, "-o", file.to_str().unwrap()]);
    assert_eq!(written["file"], file.to_str().unwrap());
    let output = std::process::Command::new("pdftotext").arg(&file).arg("-").output().expect("pdftotext runs");
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("Simplified Tax Invoice") && text.contains("فاتورة ضريبية مبسطة"), "{text}");
    assert!(text.contains("شركة أكمي"), "the Arabic seller name in logical order:\n{text}");
    assert!(text.contains("1,234.56") && text.contains("1,446.19"), "amounts:\n{text}");
    let names: Vec<String> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["invoice.pdf"], "no partial file is left beside it");
    let error = d.fails(&["invoice", "pdf", id, "-o", "/nonexistent/dir/x.pdf"]);
    assert!(error["message"].as_str().unwrap().contains("cannot write /nonexistent/dir/x.pdf"), "{error}");
}

/// The stub of ZATCA's API (crates/zatca-stub), on a free loopback port.
struct Stub {
    child: std::process::Child,
    url: String,
}

impl Stub {
    fn start() -> Stub {
        use std::io::BufRead;
        let binary = Path::new(env!("CARGO_BIN_EXE_daftar")).with_file_name("daftar-zatca-stub");
        assert!(
            binary.exists(),
            "{} is missing: build every binary first (cargo build --workspace --all-targets; scripts/test does)",
            binary.display()
        );
        let mut child =
            std::process::Command::new(binary).stdout(std::process::Stdio::piped()).spawn().expect("the stub starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("daftar-zatca-stub listening on ").expect("the stub's address").to_owned();
        Stub { child, url }
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn onboarding_then_offline_issuing_then_submission_against_the_stub() {
    let stub = Stub::start();
    let d = Daftar::init();
    // The seller profile must satisfy ZATCA first: named rule ids, nothing changed.
    let error = d.fails(&["zatca", "onboard", "--otp", "123456", "--api-url", &stub.url]);
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("BR-KSA-08") && message.contains("BR-KSA-09"), "{message}");
    d.json(&[
        "seller",
        "edit",
        "--cr-number",
        "1010010000",
        "--street",
        "King Fahd Road",
        "--building-number",
        "1234",
        "--district",
        "Al Olaya",
        "--city",
        "Riyadh",
        "--postal-code",
        "12345",
    ]);
    // Issued before onboarding: stamped with the self-signed certificate, never reportable.
    let before = issue(&d, &["--line", "Tea|1|5"]);
    assert_eq!(before["einvoice"]["self_signed"], true);
    let wrong = d.fails(&["zatca", "onboard", "--otp", "999999", "--api-url", &stub.url]);
    assert!(wrong["message"].as_str().unwrap().contains("Invalid-OTP"), "{wrong}");
    let report = d.json(&["zatca", "onboard", "--otp", "123456", "--api-url", &stub.url]);
    assert_eq!(report["stage"], "production");
    let checks: Vec<&str> =
        report["checks"].as_array().unwrap().iter().map(|c| c["status"].as_str().unwrap()).collect();
    assert_eq!(checks, ["PASS"; 6], "one compliance check per document type: {report}");
    // Issued while ZATCA is unreachable: queued, the chain continuing from before onboarding.
    let buyer = d.customer("Beta Trading", Some("399999999800003"));
    let standard = issue(&d, &["--customer", &buyer, "--line", "Chair|2|250"]);
    let simplified = issue(&d, &["--line", "Coffee|3|12.5"]);
    assert_eq!(standard["einvoice"]["self_signed"], false);
    assert_eq!(standard["einvoice"]["pih"], before["einvoice"]["hash"], "onboarding does not restart the chain");
    assert_eq!(standard["einvoice"]["icv"], 2);
    let status = d.json(&["zatca", "status"]);
    assert_eq!((status["pending"].as_u64(), status["not_reportable"].as_u64()), (Some(2), Some(1)), "{status}");
    // ZATCA answers 503 once: the round stops, nothing is lost, the error is recorded.
    let outage = std::process::Command::new("curl")
        .args([
            "-s",
            "-X",
            "POST",
            &format!("{}/stub/outage", stub.url),
            "-H",
            "content-type: application/json",
            "-d",
            "{\"requests\":1}",
        ])
        .output()
        .expect("curl runs");
    assert!(outage.status.success());
    let error = d.fails(&["zatca", "submit"]);
    assert!(error["message"].as_str().unwrap().contains("HTTP 503"), "{error}");
    let status = d.json(&["zatca", "status"]);
    assert_eq!(status["pending"], 2);
    let first = &status["submissions"].as_array().unwrap()[1];
    assert_eq!(first["attempts"], 1);
    assert!(first["last_error"].as_str().unwrap().contains("503"), "{first}");
    // Back online: cleared and reported, in counter order.
    let report = d.json(&["zatca", "submit", "--pending"]);
    let done: Vec<(&str, &str)> = report["submitted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["number"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(done, [("A-000002", "cleared"), ("A-000003", "reported")], "{report}");
    assert_eq!(report["pending"], 0);
    let status = d.json(&["zatca", "status"]);
    assert_eq!((status["cleared"].as_u64(), status["reported"].as_u64()), (Some(1), Some(1)));
    let reported = status["submissions"].as_array().unwrap().iter().find(|s| s["number"] == "A-000003").unwrap();
    assert_eq!(reported["response"]["reportingStatus"], "REPORTED", "ZATCA's answer is kept: {reported}");
    assert_eq!(d.json(&["zatca", "submit"])["submitted"].as_array().unwrap().len(), 0, "nothing twice");
    let _ = simplified;
    // A stub that is gone: unreachable, still queued.
    let later = issue(&d, &["--line", "Water|1|1"]);
    drop(stub);
    let error = d.fails(&["zatca", "submit"]);
    assert!(error["message"].as_str().unwrap().contains("could not be reached"), "{error}");
    assert_eq!(d.json(&["zatca", "status"])["pending"], 1);
    let _ = later;
}

//! ZATCA's SDK samples (tests/samples, see its README for their origin) as the oracle: the
//! invoice hash computed here must equal the `ds:DigestValue` each sample carries for its
//! `invoiceSignedData` reference.

use std::path::{Path, PathBuf};

fn samples() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "xml") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/samples"), &mut out);
    out.sort();
    out
}

/// The digest the sample's signature covers for the invoice itself.
fn expected_hash(xml: &str) -> String {
    let at = xml.find("Id=\"invoiceSignedData\"").expect("an invoiceSignedData reference");
    let rest = &xml[at..];
    let start = rest.find("<ds:DigestValue>").expect("a digest value") + "<ds:DigestValue>".len();
    let end = rest[start..].find("</ds:DigestValue>").expect("its end");
    rest[start..start + end].trim().to_owned()
}

#[test]
fn the_invoice_hash_matches_every_zatca_sample() {
    let samples = samples();
    assert_eq!(samples.len(), 19, "all of ZATCA's samples are here");
    let mut wrong = Vec::new();
    for path in &samples {
        let xml = std::fs::read_to_string(path).unwrap();
        let ours = daftar_zatca::invoice_hash(&xml).unwrap();
        let theirs = expected_hash(&xml);
        if ours != theirs {
            wrong.push(format!("{}: ours {ours}, ZATCA's {theirs}", path.display()));
        }
    }
    assert!(wrong.is_empty(), "{} of {} samples differ:\n{}", wrong.len(), samples.len(), wrong.join("\n"));
}

#[test]
fn malformed_xml_is_refused_with_its_position() {
    let error = daftar_zatca::invoice_hash("<Invoice><cbc:ID>1</Invoice>").unwrap_err();
    assert!(error.to_string().contains("malformed"), "{error}");
    assert!(daftar_zatca::invoice_hash("   ").is_err(), "no root element");
}

#[test]
fn the_first_previous_invoice_hash_is_the_specified_value() {
    let hex: String =
        ring::digest::digest(&ring::digest::SHA256, b"0").as_ref().iter().map(|b| format!("{b:02x}")).collect();
    use base64::Engine;
    assert_eq!(base64::engine::general_purpose::STANDARD.encode(hex), daftar_zatca::FIRST_PIH);
}

#[test]
fn the_readme_examples_and_a_changed_amount() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/samples");
    let standard = std::fs::read_to_string(dir.join("Standard/Invoice/Standard_Invoice.xml")).unwrap();
    assert_eq!(daftar_zatca::invoice_hash(&standard).unwrap(), "V4U5qlZ3yXQ/Si1AC/R8SLc3F+iNy27wdVe8IWRqFAQ=");
    let simplified = std::fs::read_to_string(dir.join("Simplified/Invoice/Simplified_Invoice.xml")).unwrap();
    assert_eq!(daftar_zatca::invoice_hash(&simplified).unwrap(), "z5F9qsS6oWyDhehD8u8S0DaxV+2CUiUz9Y+UsR61JgQ=");
    // One character of the payable amount changed: another hash.
    let at = standard.find("<cbc:PayableAmount").unwrap();
    let mut changed = standard.clone();
    let digit = changed[at..].find('>').unwrap() + at + 1;
    changed.replace_range(digit..digit + 1, if &standard[digit..digit + 1] == "9" { "8" } else { "9" });
    assert_ne!(daftar_zatca::invoice_hash(&changed).unwrap(), daftar_zatca::invoice_hash(&standard).unwrap());
    // The signature block and the QR do not take part: changing them keeps the hash.
    let resigned = standard.replacen("<ds:SignatureValue>", "<ds:SignatureValue>AAAA", 1);
    assert_eq!(daftar_zatca::invoice_hash(&resigned).unwrap(), daftar_zatca::invoice_hash(&standard).unwrap());
}

/// The QR payload of a sample.
fn qr_payload(xml: &str) -> String {
    let at = xml.find("<cbc:ID>QR</cbc:ID>").expect("a QR reference");
    let rest = &xml[at..];
    let start = rest.find("mimeCode=\"text/plain\">").expect("the QR payload") + "mimeCode=\"text/plain\">".len();
    let end = rest[start..].find('<').unwrap();
    rest[start..start + end].trim().to_owned()
}

#[test]
fn every_sample_qr_carries_its_hash_and_every_signature_verifies() {
    use base64::Engine;
    for path in samples() {
        let xml = std::fs::read_to_string(&path).unwrap();
        let payload = qr_payload(&xml);
        let fields = daftar_zatca::qr::decode(&payload).unwrap();
        let tags: Vec<u8> = fields.iter().map(|(t, _)| *t).collect();
        let simplified = path.to_string_lossy().contains("Simplified");
        let expected: Vec<u8> = if simplified { (1..=9).collect() } else { (1..=8).collect() };
        assert_eq!(tags, expected, "{}: QR tags", path.display());
        let hash = daftar_zatca::invoice_hash(&xml).unwrap();
        assert_eq!(String::from_utf8_lossy(&fields[5].1), hash, "{}: tag 6 is the invoice hash", path.display());
        let signature = base64::engine::general_purpose::STANDARD.decode(&fields[6].1).unwrap();
        // Six of the samples are high-S signatures, which k256 alone would refuse.
        daftar_zatca::stamp::verify(&hash, &signature, &fields[7].1)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // Another invoice's hash does not verify with this signature.
        let wrong = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(
            daftar_zatca::stamp::verify(&wrong, &signature, &fields[7].1),
            Err(daftar_zatca::stamp::StampError::Mismatch)
        );
        let refs: Vec<(u8, &[u8])> = fields.iter().map(|(t, v)| (*t, v.as_slice())).collect();
        assert_eq!(daftar_zatca::qr::encode(&refs).unwrap(), payload, "{}: TLV round trip", path.display());
    }
}

#[test]
fn verify_accepts_all_19_samples() {
    for path in samples() {
        let xml = std::fs::read_to_string(&path).unwrap();
        let verified = daftar_zatca::verify::verify(&xml).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(verified.hash, expected_hash(&xml));
        assert!(!verified.self_signed, "ZATCA's samples are stamped with ZATCA-issued certificates");
        assert!(verified.checks.len() >= 13, "{}: {:?}", path.display(), verified.checks);
    }
}

/// Byte ranges of every non-blank text node and attribute value in the part of a document the
/// invoice hash covers (outside the UBL extensions, the cac:Signature and the QR reference).
fn hashed_values(xml: &str) -> Vec<(usize, usize)> {
    let excluded: Vec<(usize, usize)> = ["<ext:UBLExtensions>", "<cac:Signature>"]
        .iter()
        .filter_map(|open| {
            let start = xml.find(open)?;
            let close = open.replacen('<', "</", 1);
            Some((start, xml[start..].find(&close)? + start))
        })
        .chain(
            xml.find("<cbc:ID>QR</cbc:ID>")
                .map(|at| (at, at + xml[at..].find("</cac:AdditionalDocumentReference>").unwrap())),
        )
        .collect();
    let mut out = Vec::new();
    let bytes = xml.as_bytes();
    let body = xml.find("?>").map_or(0, |i| i + 2);
    let mut i = body;
    while i < bytes.len() {
        let (start, end) = if bytes[i] == b'>' {
            let end = xml[i + 1..].find('<').map_or(bytes.len(), |e| e + i + 1);
            (i + 1, end)
        } else if bytes[i] == b'"' && i > 0 && bytes[i - 1] == b'=' {
            let end = xml[i + 1..].find('"').map_or(bytes.len(), |e| e + i + 1);
            (i + 1, end)
        } else {
            i += 1;
            continue;
        };
        if !xml[start..end].trim().is_empty() && !excluded.iter().any(|(a, b)| start >= *a && start <= *b) {
            out.push((start, end));
        }
        i = end.max(i + 1);
    }
    out
}

/// Changes one character of `value` (its first non-blank one) into another of the same kind.
fn one_character_changed(xml: &str, (start, end): (usize, usize)) -> String {
    let value = &xml[start..end];
    let (offset, c) = value.char_indices().find(|(_, c)| !c.is_whitespace()).unwrap();
    let replacement = match c {
        '0'..='8' => char::from(c as u8 + 1),
        '9' => '0',
        'a'..='y' | 'A'..='Y' => char::from(c as u8 + 1),
        'z' => 'a',
        'Z' => 'A',
        _ => 'x',
    };
    let mut changed = xml.to_owned();
    changed.replace_range(start + offset..start + offset + c.len_utf8(), &replacement.to_string());
    changed
}

#[test]
fn verify_rejects_every_sample_after_any_single_character_change_to_a_hashed_value() {
    let mut tried = 0;
    for path in samples() {
        let xml = std::fs::read_to_string(&path).unwrap();
        let values = hashed_values(&xml);
        assert!(values.len() > 20, "{}: found only {} hashed values", path.display(), values.len());
        for range in values {
            let changed = one_character_changed(&xml, range);
            tried += 1;
            match daftar_zatca::verify::verify(&changed) {
                Err(_) => {}
                Ok(_) => panic!(
                    "{}: changing {:?} at byte {} still verifies",
                    path.display(),
                    &xml[range.0..range.1],
                    range.0
                ),
            }
        }
    }
    assert!(tried > 19 * 20, "{tried} changes tried");
}

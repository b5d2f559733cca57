//! The invoice hash exactly as ZATCA's specification computes it: remove the UBL extensions,
//! the signature and the QR additional document reference (keeping the whitespace around
//! them), canonicalise with C14N 1.1, SHA-256, base64.
//!
//! The canonicaliser covers what UBL invoices use: elements, attributes, namespace
//! declarations, text and CDATA; comments and processing instructions are dropped (C14N without
//! comments), line ends are normalised as an XML parser does, empty elements get end tags,
//! attributes are sorted (namespace declarations first, by prefix; then by namespace and name),
//! and text and attribute values are escaped as C14N prescribes. The 19 samples of ZATCA's SDK
//! are the oracle (`tests/samples.rs`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

/// The XML could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("the invoice XML is malformed at byte {position}: {detail}")]
    Malformed { position: u64, detail: String },
    #[error("the invoice XML has no root element")]
    Empty,
}

/// The invoice hash (base64 of the SHA-256 of the canonical form).
pub fn invoice_hash(xml: &str) -> Result<String, HashError> {
    let canonical = canonical_for_hash(xml)?;
    Ok(BASE64.encode(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes())))
}

/// The bytes that are hashed: the invoice without its extensions, signature and QR reference,
/// in C14N 1.1 form.
pub fn canonical_for_hash(xml: &str) -> Result<String, HashError> {
    // XML end-of-line handling: every CR LF and lone CR is read as LF.
    let xml = xml.replace("\r\n", "\n").replace('\r', "\n");
    let mut reader = Reader::from_str(&xml);
    reader.config_mut().trim_text(false);
    reader.config_mut().expand_empty_elements = true;
    let malformed = |reader: &Reader<&[u8]>, e: &dyn std::fmt::Display| HashError::Malformed {
        position: reader.buffer_position(),
        detail: e.to_string(),
    };
    let mut out = String::with_capacity(xml.len());
    let mut depth = 0usize;
    let mut seen_root = false;
    // While skipping a removed element: the depth at which it started.
    let mut skipping: Option<usize> = None;
    // A buffered `cac:AdditionalDocumentReference` (kept unless its ID is "QR").
    let mut buffered: Option<(usize, String, bool, bool)> = None; // (start depth, output, in ID, is QR)
    loop {
        let event = reader.read_event().map_err(|e| malformed(&reader, &e))?;
        match event {
            Event::Eof => break,
            Event::Start(start) => {
                let name = start.name().0.to_owned();
                depth += 1;
                seen_root = true;
                if skipping.is_some() {
                    continue;
                }
                if name == "ext:UBLExtensions" || (name == "cac:Signature" && depth == 2) {
                    skipping = Some(depth);
                    continue;
                }
                let tag = start_tag(&start).map_err(|e| malformed(&reader, &e))?;
                match &mut buffered {
                    Some((_, text, in_id, _)) => {
                        text.push_str(&tag);
                        *in_id = name == "cbc:ID";
                    }
                    None if name == "cac:AdditionalDocumentReference" && depth == 2 => {
                        buffered = Some((depth, tag, false, false));
                    }
                    None => out.push_str(&tag),
                }
            }
            Event::End(end) => {
                let name = end.name().0.to_owned();
                let at = depth;
                depth = depth.saturating_sub(1);
                if let Some(start) = skipping {
                    if at == start {
                        skipping = None;
                    }
                    continue;
                }
                let tag = format!("</{name}>");
                match &mut buffered {
                    Some((start, text, in_id, qr)) => {
                        text.push_str(&tag);
                        *in_id = false;
                        if at == *start {
                            if !*qr {
                                out.push_str(text);
                            }
                            buffered = None;
                        }
                    }
                    None => out.push_str(&tag),
                }
            }
            Event::Text(text) => {
                if skipping.is_some() || !seen_root || depth == 0 {
                    continue;
                }
                // Entity and character references arrive as their own events.
                push_text(&mut out, &mut buffered, &text.xml10_content());
            }
            Event::GeneralRef(reference) => {
                if skipping.is_some() || depth == 0 {
                    continue;
                }
                let raw = reference.into_inner();
                let reference = format!("&{raw};");
                let value = quick_xml::escape::unescape(&reference).map_err(|e| malformed(&reader, &e))?;
                push_text(&mut out, &mut buffered, &value);
            }
            Event::CData(data) => {
                if skipping.is_some() || depth == 0 {
                    continue;
                }
                let value = data.xml10_content().into_owned();
                push_text(&mut out, &mut buffered, &value);
            }
            // C14N without comments; no declaration, doctype or processing instructions.
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) | Event::Empty(_) => {}
        }
    }
    if !seen_root {
        return Err(HashError::Empty);
    }
    Ok(out)
}

fn push_text(out: &mut String, buffered: &mut Option<(usize, String, bool, bool)>, value: &str) {
    let escaped = escape_text(value);
    match buffered {
        Some((_, text, in_id, qr)) => {
            if *in_id && value.trim() == "QR" {
                *qr = true;
            }
            text.push_str(&escaped);
        }
        None => out.push_str(&escaped),
    }
}

pub(crate) fn escape_text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
    out
}

fn escape_attribute(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
    out
}

/// A start tag in canonical form: namespace declarations first (default, then by prefix), then
/// the other attributes by qualified name (UBL's attributes are unprefixed, where this equals
/// C14N's order by namespace URI then local name).
fn start_tag(start: &BytesStart<'_>) -> Result<String, quick_xml::Error> {
    let mut namespaces = Vec::new();
    let mut attributes = Vec::new();
    for attribute in start.attributes() {
        let attribute = attribute.map_err(quick_xml::Error::from)?;
        let key = attribute.key.0.to_owned();
        let value = attribute.normalized_value(quick_xml::XmlVersion::Implicit1_0)?.into_owned();
        if key == "xmlns" || key.starts_with("xmlns:") {
            namespaces.push((key, value));
        } else {
            attributes.push((key, value));
        }
    }
    namespaces.sort();
    attributes.sort();
    let mut tag = format!("<{}", start.name().0);
    for (key, value) in namespaces.iter().chain(&attributes) {
        tag.push_str(&format!(" {key}=\"{}\"", escape_attribute(value)));
    }
    tag.push('>');
    Ok(tag)
}

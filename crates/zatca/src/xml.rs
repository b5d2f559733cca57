//! A small read-only element tree over quick-xml, enough to read an e-invoice's fields, and
//! the escaping used when writing one. Elements are matched by local name (the prefix is
//! ignored), so documents that bind UBL's namespaces to other prefixes read the same.

use quick_xml::events::Event;
use quick_xml::reader::Reader;

use crate::hash::HashError;

/// One element: its qualified name as written, attributes, text content and children.
#[derive(Debug, Clone, Default)]
pub struct Element {
    pub name: String,
    pub attributes: Vec<(String, String)>,
    /// The element's own text (concatenated, unescaped), without its children's.
    pub text: String,
    pub children: Vec<Element>,
    /// Byte range of the whole element in the source.
    pub span: (usize, usize),
}

impl Element {
    /// The name without its prefix.
    pub fn local(&self) -> &str {
        self.name.rsplit_once(':').map_or(self.name.as_str(), |(_, local)| local)
    }

    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Direct children with this local name.
    pub fn all<'a>(&'a self, local: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.local() == local)
    }

    /// The first element down a path of local names (`"LegalMonetaryTotal/PayableAmount"`).
    pub fn at(&self, path: &str) -> Option<&Element> {
        let mut here = self;
        for step in path.split('/') {
            here = here.children.iter().find(|c| c.local() == step)?;
        }
        Some(here)
    }

    /// The trimmed text at `path`, if present.
    pub fn text_at(&self, path: &str) -> Option<&str> {
        self.at(path).map(|e| e.text.trim())
    }

    /// Every element below this one (depth first), this one included.
    pub fn descendants(&self) -> Vec<&Element> {
        let mut out = vec![self];
        let mut at = 0;
        while at < out.len() {
            let here = out[at];
            out.extend(here.children.iter());
            at += 1;
        }
        out
    }
}

/// Parses `xml` into its root element.
pub fn parse(xml: &str) -> Result<Element, HashError> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().trim_text(false);
    let malformed = |position: u64, e: &dyn std::fmt::Display| HashError::Malformed { position, detail: e.to_string() };
    let mut stack: Vec<Element> = Vec::new();
    let mut root = None;
    loop {
        let before = reader.buffer_position() as usize;
        let event = reader.read_event().map_err(|e| malformed(reader.buffer_position(), &e))?;
        let after = reader.buffer_position() as usize;
        match event {
            Event::Eof => break,
            Event::Start(ref start) | Event::Empty(ref start) => {
                let empty = matches!(event, Event::Empty(_));
                let mut element =
                    Element { name: start.name().0.to_owned(), span: (before, after), ..Element::default() };
                for attribute in start.attributes() {
                    let attribute = attribute.map_err(|e| malformed(reader.buffer_position(), &e))?;
                    let value = attribute
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|e| malformed(reader.buffer_position(), &e))?
                        .into_owned();
                    element.attributes.push((attribute.key.0.to_owned(), value));
                }
                if empty {
                    close(&mut stack, element, &mut root);
                } else {
                    stack.push(element);
                }
            }
            Event::End(_) => {
                let mut element = stack.pop().ok_or_else(|| malformed(before as u64, &"an end tag without a start"))?;
                element.span.1 = after;
                close(&mut stack, element, &mut root);
            }
            Event::Text(text) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&text.xml10_content());
                }
            }
            Event::CData(data) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&data.xml10_content());
                }
            }
            Event::GeneralRef(reference) => {
                if let Some(top) = stack.last_mut() {
                    let entity = format!("&{};", reference.into_inner());
                    top.text.push_str(&quick_xml::escape::unescape(&entity).map_err(|e| malformed(before as u64, &e))?);
                }
            }
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(malformed(xml.len() as u64, &format!("<{}> is not closed", stack.last().unwrap().name)));
    }
    root.ok_or(HashError::Empty)
}

fn close(stack: &mut [Element], element: Element, root: &mut Option<Element>) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

/// Escapes text content as C14N writes it (`&`, `<`, `>`, CR), so what Daftar writes is
/// already in canonical form.
pub fn text(value: &str) -> String {
    crate::hash::escape_text(value)
}

//! Writing a benchmark's figures into docs/BENCHMARKS.md, shared by the bench binaries.

#![allow(dead_code)]

use std::path::Path;

/// Replaces what lies between `<!-- NAME:start -->` and `<!-- NAME:end -->` in `path` with
/// `body` (keeping the markers and everything around them, such as the notes on reading the
/// figures), or appends a `## HEADING` section holding it when the markers are not there yet.
pub fn write_section(path: &Path, name: &str, heading: &str, body: &str) -> std::io::Result<()> {
    let start = format!("<!-- {name}:start -->");
    let end = format!("<!-- {name}:end -->");
    let section = format!("{start}\n{body}\n{end}");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let updated = match (text.find(&start), text.find(&end)) {
        (Some(a), Some(b)) if a < b => format!("{}{section}{}", &text[..a], &text[b + end.len()..]),
        _ => format!("{}\n\n## {heading}\n\n{section}\n", text.trim_end()),
    };
    std::fs::write(path, updated)?;
    println!("wrote {}", path.display());
    Ok(())
}

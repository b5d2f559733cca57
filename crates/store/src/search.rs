//! Turning what a person types into an FTS5 query.

/// An FTS5 expression for search as you type, or `None` when `text` has no words: every word
/// must appear, the last one as a word prefix (it may still be being typed), the earlier ones as
/// whole words. Whole words let FTS5 walk its doclists lazily in rowid order and stop after one
/// page; making every word a prefix costs a full merge per word (p99 11.6 ms instead of 6.3 ms
/// over 100,000 invoices, docs/BENCHMARKS.md). Words are split the way the `unicode61` tokenizer
/// splits them, and each is quoted, so FTS5 syntax (`AND`, `*`, `"`, `:`) in the input is inert.
pub(crate) fn match_expression(text: &str) -> Option<String> {
    let words: Vec<&str> = text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
    let (last, earlier) = words.split_last()?;
    let mut terms: Vec<String> = earlier.iter().map(|w| format!("\"{w}\"")).collect();
    terms.push(format!("\"{last}\"*"));
    Some(terms.join(" "))
}

/// The expression that finds `text` anywhere in an indexed document, every word as a prefix
/// (used by `store verify` to check a document's own text is findable).
pub(crate) fn prefix_expression(text: &str) -> Option<String> {
    let terms: Vec<String> =
        text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(|w| format!("\"{w}\"*")).collect();
    if terms.is_empty() { None } else { Some(terms.join(" ")) }
}

/// Moves queued search text into `invoice_search`, inside the caller's transaction.
pub(crate) fn move_queue(conn: &rusqlite::Connection) -> rusqlite::Result<usize> {
    conn.execute("DELETE FROM invoice_search WHERE rowid IN (SELECT rowid FROM search_queue WHERE replace = 1)", [])?;
    let moved = conn.execute(
        "INSERT INTO invoice_search (rowid, number, customer, lines, notes)
         SELECT rowid, number, customer, lines, notes FROM search_queue",
        [],
    )?;
    conn.execute("DELETE FROM search_queue", [])?;
    Ok(moved)
}

/// Moves queued search text into `invoice_search` in a transaction of its own. Returns how many
/// rows moved. Must not be called inside another transaction.
pub(crate) fn flush_queue(conn: &rusqlite::Connection) -> rusqlite::Result<usize> {
    let pending: bool = conn.query_row("SELECT EXISTS (SELECT 1 FROM search_queue)", [], |r| r.get(0))?;
    if !pending {
        return Ok(0);
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    match move_queue(conn) {
        Ok(moved) => {
            conn.execute_batch("COMMIT")?;
            Ok(moved)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_in_the_input_is_quoted_away() {
        assert_eq!(match_expression("A-0001 acme\"*"), Some("\"A\" \"0001\" \"acme\"*".into()));
        assert_eq!(match_expression("  -- "), None);
        assert_eq!(match_expression("شركة النو"), Some("\"شركة\" \"النو\"*".into()));
        assert_eq!(prefix_expression("sa nu"), Some("\"sa\"* \"nu\"*".into()));
    }
}

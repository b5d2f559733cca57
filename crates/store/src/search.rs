//! Turning what a person types into an FTS5 query.

/// An FTS5 expression matching rows that contain every word of `text` as a word prefix, or
/// `None` when `text` has no words. Words are split the way the `unicode61` tokenizer splits
/// them, and each is quoted, so FTS5 syntax (`AND`, `*`, `"`, `:`) in the input is inert.
pub(crate) fn match_expression(text: &str) -> Option<String> {
    let terms: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| format!("\"{w}\"*"))
        .collect();
    if terms.is_empty() {
        None
    } else {
        Some(terms.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_in_the_input_is_quoted_away() {
        assert_eq!(
            match_expression("A-0001 acme\"*"),
            Some("\"A\"* \"0001\"* \"acme\"*".into())
        );
        assert_eq!(match_expression("  -- "), None);
        assert_eq!(
            match_expression("شركة النور"),
            Some("\"شركة\"* \"النور\"*".into())
        );
    }
}

//! How large Automerge bytes become once inflated, measured before Automerge sees them.
//!
//! Automerge keeps changes and saved documents in chunks whose contents (a compressed change) or
//! columns (a saved document) may be deflated, and inflates them with no limit when it parses
//! them. A few MiB of deflated zeros inflate to gigabytes: one such change, sealed by any
//! member, would abort every device that pulls it, at every start, before the pull cursor
//! moves (security review F5). So every change and document that arrives from elsewhere (a
//! relay, a snapshot, a backup) is walked here first: the chunk headers and column layouts are
//! read, every deflated region is inflated within what is left of the budget (stopping one byte
//! past it), and bytes that would inflate past [`MAX_INFLATED_BYTES`] are refused with the
//! reason. The columns are run-length encoded too, so a few bytes can declare billions of
//! operations for Automerge to walk and hold: every column's run headers are read and more than
//! [`MAX_COLUMN_ROWS`] rows are refused the same way. What Automerge then parses is bounded.
//!
//! The format is Automerge's binary storage format: a sequence of chunks, each `magic (4) |
//! checksum (4) | type (1) | uleb128 length | contents`; type 0 is a document (actors, heads, the
//! change and op column layouts, the columns, head indices), type 1 a change (whose columns are
//! never deflated: Automerge refuses that), type 2 a change whose whole contents are deflated.

use std::io::Read;

/// The most any change or saved document may inflate to. A record's document is a few KiB to a
/// few hundred KiB; a change is at most 16 MiB before sealing (`MAX_CHANGE_BYTES`).
pub const MAX_INFLATED_BYTES: u64 = 64 * 1024 * 1024;

/// The most the documents of one snapshot or backup part (up to 512 documents) may inflate to
/// together, per thread preparing them: what a bootstrap holds in memory at once stays bounded.
pub const MAX_PART_INFLATED_BYTES: u64 = 256 * 1024 * 1024;

/// The most rows (operations, or values of one column) a change or saved document may declare.
/// Automerge's columns are run-length encoded, so a few bytes can declare billions of
/// operations, which Automerge would then walk and hold; a record's document has thousands.
pub const MAX_COLUMN_ROWS: u64 = 4_000_000;

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const HASH_LEN: usize = 32;
/// The bit of a column specification that says the column is deflated.
const DEFLATE_BIT: u64 = 0b1000;

/// Bytes that are not a well-formed chunk sequence, or that inflate past the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InflationError {
    #[error("it would inflate to more than {limit} bytes (a compression bomb)")]
    TooLarge { limit: u64 },
    #[error("one of its columns declares more than {limit} rows (an expansion bomb)")]
    TooManyRows { limit: u64 },
    #[error("it is not Automerge data: {0}")]
    Malformed(&'static str),
}

/// The size the chunks in `bytes` inflate to, refusing them past `limit` bytes (counted over
/// all chunks together) or with any column declaring more than [`MAX_COLUMN_ROWS`] rows. Holds
/// at most one inflated part (within `limit`) at a time.
pub fn inflated_size(bytes: &[u8], limit: u64) -> Result<u64, InflationError> {
    let mut input = Cursor { bytes, at: 0 };
    let mut total = 0u64;
    while !input.is_empty() {
        if input.take(4)? != MAGIC {
            return Err(InflationError::Malformed("a chunk does not start with Automerge's magic bytes"));
        }
        input.take(4)?; // checksum
        let kind = input.take(1)?[0];
        let length = input.uleb()?;
        let contents = input.take(usize::try_from(length).map_err(|_| too_long())?)?;
        let budget = limit.saturating_sub(total);
        total += match kind {
            0 => document_size(contents, budget),
            1 => change_columns(contents).map(|()| contents.len() as u64),
            2 => inflate_bounded(contents, budget)
                .and_then(|inflated| change_columns(&inflated).map(|()| inflated.len() as u64)),
            _ => Err(InflationError::Malformed("a chunk of unknown type")),
        }
        // What was over is the whole: name the caller's limit, not what was left of it.
        .map_err(|e| match e {
            InflationError::TooLarge { .. } => InflationError::TooLarge { limit },
            malformed => malformed,
        })?;
        if total > limit {
            return Err(InflationError::TooLarge { limit });
        }
    }
    Ok(total)
}

/// A document chunk's size with each deflated column counted inflated.
fn document_size(contents: &[u8], budget: u64) -> Result<u64, InflationError> {
    let mut input = Cursor { bytes: contents, at: 0 };
    for _ in 0..input.uleb()? {
        input.prefixed()?; // actors
    }
    input.hashes()?; // heads
    let mut columns = Vec::new();
    for _ in 0..2 {
        // The change columns' layout, then the op columns'.
        for _ in 0..input.uleb()? {
            columns.push((input.uleb()?, input.uleb()?));
        }
    }
    let mut size = input.at as u64;
    for (spec, length) in columns {
        let data = input.take(usize::try_from(length).map_err(|_| too_long())?)?;
        size += if spec & DEFLATE_BIT != 0 {
            let inflated = inflate_bounded(data, budget.saturating_sub(size))?;
            column_rows(spec, &inflated)?;
            inflated.len() as u64
        } else {
            column_rows(spec, data)?;
            data.len() as u64
        };
        if size > budget {
            return Err(InflationError::TooLarge { limit: budget });
        }
    }
    // The head indices that follow are plain.
    Ok(size + (contents.len() - input.at) as u64)
}

/// `deflated` inflated, stopping (with an error) one byte past `budget`: what is held is
/// bounded by the budget (a part within it still has its columns to be counted).
fn inflate_bounded(deflated: &[u8], budget: u64) -> Result<Vec<u8>, InflationError> {
    let mut inflater = flate2::bufread::DeflateDecoder::new(deflated).take(budget.saturating_add(1));
    let mut inflated = Vec::new();
    inflater.read_to_end(&mut inflated).map_err(|_| InflationError::Malformed("a deflated part does not inflate"))?;
    if inflated.len() as u64 > budget {
        return Err(InflationError::TooLarge { limit: budget });
    }
    Ok(inflated)
}

/// Checks the op columns of a change chunk's contents (after its header fields).
fn change_columns(contents: &[u8]) -> Result<(), InflationError> {
    let mut input = Cursor { bytes: contents, at: 0 };
    input.hashes()?; // deps
    input.prefixed()?; // actor
    input.uleb()?; // seq
    input.uleb()?; // start op
    input.sleb()?; // time
    input.prefixed()?; // message
    for _ in 0..input.uleb()? {
        input.prefixed()?; // other actors
    }
    let mut columns = Vec::new();
    for _ in 0..input.uleb()? {
        columns.push((input.uleb()?, input.uleb()?));
    }
    for (spec, length) in columns {
        // Automerge refuses deflated columns in a change itself; counted as they are.
        column_rows(spec, input.take(usize::try_from(length).map_err(|_| too_long())?)?)?;
    }
    Ok(())
}

/// Checks that the column `data` of type `spec` declares at most [`MAX_COLUMN_ROWS`] rows, and,
/// for a group column, that the rows its groups stand for stay within it too. Reads only run
/// headers and values, so the cost is the column's encoded size.
fn column_rows(spec: u64, data: &[u8]) -> Result<(), InflationError> {
    const GROUP: u64 = 0;
    const DELTA: u64 = 3;
    const BOOLEAN: u64 = 4;
    const STRING: u64 = 5;
    const RAW_VALUE: u64 = 7;
    let over = || InflationError::TooManyRows { limit: MAX_COLUMN_ROWS };
    let kind = spec & 0b111;
    let mut input = Cursor { bytes: data, at: 0 };
    let (mut rows, mut grouped) = (0u64, 0u64);
    let value = |input: &mut Cursor<'_>| -> Result<u64, InflationError> {
        match kind {
            STRING => input.prefixed().map(|_| 0),
            DELTA => input.sleb().map(|_| 0),
            _ => input.uleb(),
        }
    };
    match kind {
        RAW_VALUE => {}
        BOOLEAN => {
            // Alternating runs of false and true, each a count.
            while !input.is_empty() {
                rows = rows.saturating_add(input.uleb()?);
                if rows > MAX_COLUMN_ROWS {
                    return Err(over());
                }
            }
        }
        _ => {
            // Run-length encoded: a positive count repeats one value, a negative one is followed
            // by that many values, zero by a count of nulls.
            while !input.is_empty() {
                let count = input.sleb()?;
                let run = count.unsigned_abs();
                if count > 0 {
                    let repeated = value(&mut input)?;
                    grouped = grouped.saturating_add(repeated.saturating_mul(run));
                } else if count < 0 {
                    if rows.saturating_add(run) > MAX_COLUMN_ROWS {
                        return Err(over());
                    }
                    for _ in 0..run {
                        grouped = grouped.saturating_add(value(&mut input)?);
                    }
                } else {
                    let nulls = input.uleb()?;
                    rows = rows.saturating_add(nulls);
                }
                rows = rows.saturating_add(if count == 0 { 0 } else { run });
                if rows > MAX_COLUMN_ROWS || (kind == GROUP && grouped > MAX_COLUMN_ROWS) {
                    return Err(over());
                }
            }
        }
    }
    Ok(())
}

/// Refuses received `bytes` (`what`: "a received change", "its save") of `document` that are
/// not Automerge data or would inflate past `limit`; returns their inflated size.
pub(crate) fn check_received(
    document: daftar_domain::DocumentId,
    what: &str,
    bytes: &[u8],
    limit: u64,
) -> crate::Result<u64> {
    inflated_size(bytes, limit)
        .map_err(|e| crate::StoreError::Document { id: document, detail: format!("{what} was refused: {e}") })
}

fn too_long() -> InflationError {
    InflationError::Malformed("a length longer than the data")
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn is_empty(&self) -> bool {
        self.at == self.bytes.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], InflationError> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.bytes.len()).ok_or_else(too_long)?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    /// A count of change hashes, then the hashes.
    fn hashes(&mut self) -> Result<&'a [u8], InflationError> {
        let count = self.uleb()?;
        self.take(usize::try_from(count).ok().and_then(|c| c.checked_mul(HASH_LEN)).ok_or_else(too_long)?)
    }

    /// A length-prefixed byte string.
    fn prefixed(&mut self) -> Result<&'a [u8], InflationError> {
        let length = self.uleb()?;
        self.take(usize::try_from(length).map_err(|_| too_long())?)
    }

    /// A signed LEB128 number of at most 64 bits.
    fn sleb(&mut self) -> Result<i64, InflationError> {
        let mut value = 0i64;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            value |= i64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                if shift + 7 < 64 && byte & 0x40 != 0 {
                    value |= -1i64 << (shift + 7);
                }
                return Ok(value);
            }
        }
        Err(InflationError::Malformed("a number longer than 64 bits"))
    }

    /// An unsigned LEB128 number of at most 64 bits.
    fn uleb(&mut self) -> Result<u64, InflationError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            let part = u64::from(byte & 0x7f);
            if shift == 63 && part > 1 {
                return Err(InflationError::Malformed("a number longer than 64 bits"));
            }
            value |= part << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(InflationError::Malformed("a number longer than 64 bits"))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ROOT};

    use super::*;

    fn deflate(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn uleb(mut n: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn chunk(kind: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend([0, 0, 0, 0, kind]);
        uleb(contents.len() as u64, &mut out);
        out.extend(contents);
        out
    }

    /// A document with every kind of column in use (maps, lists, text, counters, deletions,
    /// several actors) and long enough that Automerge deflates some of its columns.
    fn document() -> AutoCommit {
        use automerge::{ObjType, ScalarValue};
        let mut doc = AutoCommit::new();
        let lines = doc.put_object(ROOT, "lines", ObjType::List).unwrap();
        let notes = doc.put_object(ROOT, "notes", ObjType::Text).unwrap();
        doc.put(ROOT, "count", ScalarValue::counter(0)).unwrap();
        for n in 0..200 {
            doc.put(ROOT, format!("field {n}"), "a value repeated to give the columns some length ".repeat(4)).unwrap();
            doc.insert(&lines, 0, n as i64).unwrap();
            doc.splice_text(&notes, 0, 0, "ملاحظة note ").unwrap();
            doc.increment(ROOT, "count", 3).unwrap();
            if n % 3 == 2 {
                doc.delete(ROOT, format!("field {}", n / 2)).unwrap();
                doc.delete(&lines, 1).unwrap();
                doc.splice_text(&notes, 2, 4, "").unwrap();
            }
            doc.commit();
            if n % 50 == 0 {
                // Another actor's edits too.
                let mut other = doc.fork();
                other.put(ROOT, "other", n as u64).unwrap();
                doc.merge(&mut other).unwrap();
            }
        }
        doc
    }

    /// A change chunk whose one op column (of `spec`) holds `column`.
    fn change_with_column(spec: u64, column: &[u8]) -> Vec<u8> {
        let mut contents = Vec::new();
        uleb(0, &mut contents); // deps
        uleb(16, &mut contents);
        contents.extend([7; 16]); // actor
        uleb(1, &mut contents); // seq
        uleb(1, &mut contents); // start op
        uleb(0, &mut contents); // time
        uleb(0, &mut contents); // message
        uleb(0, &mut contents); // other actors
        uleb(1, &mut contents);
        uleb(spec, &mut contents);
        uleb(column.len() as u64, &mut contents);
        contents.extend(column);
        chunk(1, &contents)
    }

    #[test]
    fn run_length_bombs_are_refused_by_their_row_count() {
        let too_many = Err(InflationError::TooManyRows { limit: MAX_COLUMN_ROWS });
        // 2^40 repeats of one integer (a positive run: sleb 2^40, then the value).
        let mut run = vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x20];
        uleb(1, &mut run);
        assert_eq!(inflated_size(&change_with_column((4 << 4) | 2, &run), MAX_INFLATED_BYTES), too_many);
        // 2^40 nulls of an actor column.
        let mut nulls = vec![0];
        uleb(1 << 40, &mut nulls);
        assert_eq!(inflated_size(&change_with_column(1, &nulls), MAX_INFLATED_BYTES), too_many);
        // A boolean column of 2^40 falses.
        let mut falses = Vec::new();
        uleb(1 << 40, &mut falses);
        assert_eq!(inflated_size(&change_with_column((3 << 4) | 4, &falses), MAX_INFLATED_BYTES), too_many);
        // One group of 2^40 members.
        let mut group = vec![1];
        uleb(1 << 40, &mut group);
        assert_eq!(inflated_size(&change_with_column(7 << 4, &group), MAX_INFLATED_BYTES), too_many);
        // The same shapes at an honest size pass.
        let mut small = vec![2];
        uleb(5, &mut small);
        assert!(inflated_size(&change_with_column(7 << 4, &small), MAX_INFLATED_BYTES).is_ok());
    }

    #[test]
    fn real_changes_and_documents_measure_and_pass() {
        let mut doc = document();
        let saved = doc.save();
        let size = inflated_size(&saved, MAX_INFLATED_BYTES).unwrap();
        assert!(size > saved.len() as u64, "a saved document has deflated columns ({size} vs {})", saved.len());
        for change in doc.get_changes(&[]) {
            let mut change = change.clone();
            let bytes = change.bytes();
            assert!(inflated_size(&bytes, MAX_INFLATED_BYTES).unwrap() >= bytes.len() as u64 - 16);
        }
        // Several chunks in one buffer (a document then incremental changes) count together.
        let mut both = saved.clone();
        doc.put(ROOT, "later", 1).unwrap();
        both.extend(doc.save_incremental());
        assert!(inflated_size(&both, MAX_INFLATED_BYTES).unwrap() > size);
        assert!(matches!(inflated_size(&both, size), Err(InflationError::TooLarge { .. })));
    }

    #[test]
    fn a_compressed_change_bomb_is_refused_without_inflating_it() {
        // 256 MiB of zeros, deflated to about 256 KiB.
        let zeros = vec![0u8; 1 << 20];
        let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        for _ in 0..256 {
            encoder.write_all(&zeros).unwrap();
        }
        let bomb = chunk(2, &encoder.finish().unwrap());
        assert!(bomb.len() < 1 << 20);
        assert_eq!(
            inflated_size(&bomb, MAX_INFLATED_BYTES),
            Err(InflationError::TooLarge { limit: MAX_INFLATED_BYTES })
        );
        assert_eq!(inflated_size(&bomb, 300 << 20), Ok(256 << 20), "measured, not guessed");
    }

    #[test]
    fn a_document_with_a_deflated_column_bomb_is_refused() {
        let column = deflate(&vec![0u8; 100 << 20]);
        let mut contents = Vec::new();
        uleb(0, &mut contents); // actors
        uleb(0, &mut contents); // heads
        uleb(1, &mut contents); // one change column…
        uleb((1 << 4) | DEFLATE_BIT, &mut contents); // …deflated
        uleb(column.len() as u64, &mut contents);
        uleb(0, &mut contents); // no op columns
        contents.extend(&column);
        let bomb = chunk(0, &contents);
        assert_eq!(
            inflated_size(&bomb, MAX_INFLATED_BYTES),
            Err(InflationError::TooLarge { limit: MAX_INFLATED_BYTES })
        );
    }

    #[test]
    fn malformed_input_is_named_not_panicked_on() {
        let saved = document().save();
        for cut in [1, 4, 9, saved.len() / 2, saved.len() - 1] {
            assert!(
                matches!(inflated_size(&saved[..cut], MAX_INFLATED_BYTES), Err(InflationError::Malformed(_))),
                "cut at {cut}"
            );
        }
        assert!(matches!(inflated_size(b"not automerge", MAX_INFLATED_BYTES), Err(InflationError::Malformed(_))));
        assert!(matches!(inflated_size(&chunk(7, b""), MAX_INFLATED_BYTES), Err(InflationError::Malformed(_))));
        // A length of 2^64 - 1 and an eleven-byte number.
        let mut huge = MAGIC.to_vec();
        huge.extend([0, 0, 0, 0, 1]);
        huge.extend([0xff; 9]);
        huge.push(0x01);
        assert!(matches!(inflated_size(&huge, MAX_INFLATED_BYTES), Err(InflationError::Malformed(_))));
        let mut long = MAGIC.to_vec();
        long.extend([0, 0, 0, 0, 1]);
        long.extend([0x80; 11]);
        assert!(matches!(inflated_size(&long, MAX_INFLATED_BYTES), Err(InflationError::Malformed(_))));
        assert!(matches!(
            inflated_size(&chunk(2, b"\xff\xff not deflate"), MAX_INFLATED_BYTES),
            Err(InflationError::Malformed(_))
        ));
    }
}

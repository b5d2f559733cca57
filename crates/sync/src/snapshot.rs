//! Snapshots for fast bootstrap: every document of a workspace as one device holds it, covering
//! the relay's log up to a sequence number, cut into parts that each fit one request.
//!
//! Each part is sealed as an ordinary [`Envelope`](crate::Envelope) (signed by the device that
//! made it, encrypted with the workspace key) whose document id is the snapshot's random id and
//! whose kind is [`SNAPSHOT_KIND`]. Inside, the part names its snapshot id, the log position the
//! snapshot covers, its index and the number of parts, so a relay can neither claim a snapshot
//! covers more of the log than it does nor mix parts of two snapshots.
//!
//! Part plaintext, format 2 (all integers big-endian):
//!
//! ```text
//! "DSNP" | 0x02 | snapshot id (16) | seq (i64) | part (u32) | parts (u32) | count (u32) | documents
//! document: id (16) | kind (u8) | saved length (u32, 0 = none) | saved | changes (u32)
//!           | per change: device id (16) | length (u32) | Automerge change bytes
//!           | proofs (u32) | per proof: change hash (32) | device id (16) | seal proof (140)
//! ```
//!
//! A seal proof ([`SealProof`](crate::SealProof)) lets the reader check that the named device
//! sealed the change itself: the snapshot's maker cannot attribute a change to anyone else.
//! Format 1 (no proofs) is still read; a bootstrap does not trust such a snapshot.

use daftar_domain::{DeviceId, DocumentId};

use crate::envelope::PROOF_LEN;

/// The envelope kind code that marks a snapshot part.
pub const SNAPSHOT_KIND: u8 = 0xFF;
const MAGIC: &[u8; 4] = b"DSNP";
const VERSION: u8 = 2;
const HEADER_LEN: usize = 4 + 1 + 16 + 8 + 4 + 4 + 4;
/// The bytes one proof takes in a part.
pub const PROOF_ENTRY: usize = 32 + 16 + PROOF_LEN;

/// A snapshot part could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("this is not a Daftar snapshot part (wrong magic)")]
    NotASnapshot,
    #[error("snapshot format {0} is newer than this version of Daftar understands; update Daftar")]
    UnsupportedVersion(u8),
    #[error("the snapshot part is cut short or malformed at byte {0}")]
    Malformed(usize),
    #[error("the snapshot's parts do not belong together ({0}); the bootstrap falls back to the log")]
    Mismatched(String),
}

/// One change of a document, with the device that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotChange {
    pub device: DeviceId,
    pub bytes: Vec<u8>,
}

/// Who sealed one change of a document (in its save or its rows), provably.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotProof {
    pub hash: [u8; 32],
    pub device: DeviceId,
    pub proof: [u8; PROOF_LEN],
}

/// One document as the snapshotting device holds it: a compacted save (if it has one), the
/// change rows beside it, and the seal proofs it holds for its changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotDocument {
    pub document: DocumentId,
    pub kind: u8,
    pub saved: Option<Vec<u8>>,
    pub changes: Vec<SnapshotChange>,
    pub proofs: Vec<SnapshotProof>,
}

impl SnapshotDocument {
    /// The bytes this document takes in a part.
    pub fn encoded_len(&self) -> usize {
        16 + 1
            + 4
            + self.saved.as_ref().map_or(0, Vec::len)
            + 4
            + self.changes.iter().map(|c| 20 + c.bytes.len()).sum::<usize>()
            + 4
            + self.proofs.len() * PROOF_ENTRY
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.document.as_uuid().as_bytes());
        out.push(self.kind);
        let saved = self.saved.as_deref().unwrap_or_default();
        out.extend_from_slice(&(saved.len() as u32).to_be_bytes());
        out.extend_from_slice(saved);
        out.extend_from_slice(&(self.changes.len() as u32).to_be_bytes());
        for change in &self.changes {
            out.extend_from_slice(change.device.as_bytes());
            out.extend_from_slice(&(change.bytes.len() as u32).to_be_bytes());
            out.extend_from_slice(&change.bytes);
        }
        out.extend_from_slice(&(self.proofs.len() as u32).to_be_bytes());
        for proof in &self.proofs {
            out.extend_from_slice(&proof.hash);
            out.extend_from_slice(proof.device.as_bytes());
            out.extend_from_slice(&proof.proof);
        }
    }
}

/// Which snapshot a part belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartHeader {
    pub snapshot: [u8; 16],
    pub seq: i64,
    pub part: u32,
    pub parts: u32,
}

/// Groups documents of the given encoded sizes into parts of at most about `max_part_bytes`
/// each (a single larger document gets a part of its own), as ranges of indices. Always at
/// least one part, so an empty workspace has a snapshot too.
pub fn plan_parts(sizes: &[usize], max_part_bytes: usize) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let (mut start, mut size) = (0, HEADER_LEN);
    for (index, len) in sizes.iter().enumerate() {
        if index > start && size + len > max_part_bytes {
            ranges.push(start..index);
            (start, size) = (index, HEADER_LEN);
        }
        size += len;
    }
    ranges.push(start..sizes.len());
    ranges
}

/// The plaintext of one part.
pub fn encode_part(header: &PartHeader, documents: &[SnapshotDocument]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + documents.iter().map(SnapshotDocument::encoded_len).sum::<usize>());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&header.snapshot);
    out.extend_from_slice(&header.seq.to_be_bytes());
    out.extend_from_slice(&header.part.to_be_bytes());
    out.extend_from_slice(&header.parts.to_be_bytes());
    out.extend_from_slice(&(documents.len() as u32).to_be_bytes());
    for document in documents {
        document.write(&mut out);
    }
    out
}

/// Cuts documents into part plaintexts (see [`plan_parts`]).
pub fn pack(snapshot: [u8; 16], seq: i64, documents: &[SnapshotDocument], max_part_bytes: usize) -> Vec<Vec<u8>> {
    let sizes: Vec<usize> = documents.iter().map(SnapshotDocument::encoded_len).collect();
    let ranges = plan_parts(&sizes, max_part_bytes);
    let parts = ranges.len() as u32;
    ranges
        .into_iter()
        .enumerate()
        .map(|(part, range)| encode_part(&PartHeader { snapshot, seq, part: part as u32, parts }, &documents[range]))
        .collect()
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        let end =
            self.at.checked_add(n).filter(|end| *end <= self.bytes.len()).ok_or(SnapshotError::Malformed(self.at))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
}

/// Reads one part's plaintext.
pub fn unpack(bytes: &[u8]) -> Result<(PartHeader, Vec<SnapshotDocument>), SnapshotError> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(4).map_err(|_| SnapshotError::NotASnapshot)? != MAGIC {
        return Err(SnapshotError::NotASnapshot);
    }
    let version = r.array::<1>()?[0];
    if version != VERSION && version != 1 {
        return Err(SnapshotError::UnsupportedVersion(version));
    }
    let header =
        PartHeader { snapshot: r.array()?, seq: i64::from_be_bytes(r.array()?), part: r.u32()?, parts: r.u32()? };
    if header.part >= header.parts || header.seq < 0 {
        return Err(SnapshotError::Malformed(HEADER_LEN - 12));
    }
    let count = r.u32()?;
    // Each document takes at least 25 bytes: a count beyond that is a lie, not an allocation.
    if count as usize > (bytes.len() - r.at) / 25 {
        return Err(SnapshotError::Malformed(r.at - 4));
    }
    let mut documents = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let document = DocumentId::from_uuid(uuid::Uuid::from_bytes(r.array()?));
        let kind = r.array::<1>()?[0];
        let saved_len = r.u32()? as usize;
        let saved = (saved_len > 0).then(|| r.take(saved_len).map(<[u8]>::to_vec)).transpose()?;
        let changes = r.u32()?;
        if changes as usize > (bytes.len() - r.at) / 20 {
            return Err(SnapshotError::Malformed(r.at - 4));
        }
        let changes = (0..changes)
            .map(|_| {
                let device = DeviceId::from_uuid(uuid::Uuid::from_bytes(r.array()?));
                let len = r.u32()? as usize;
                Ok(SnapshotChange { device, bytes: r.take(len)?.to_vec() })
            })
            .collect::<Result<Vec<_>, SnapshotError>>()?;
        let mut proofs = Vec::new();
        if version >= 2 {
            let count = r.u32()?;
            if count as usize > (bytes.len() - r.at) / PROOF_ENTRY {
                return Err(SnapshotError::Malformed(r.at - 4));
            }
            proofs = (0..count)
                .map(|_| {
                    let hash = r.array()?;
                    let device = DeviceId::from_uuid(uuid::Uuid::from_bytes(r.array()?));
                    Ok(SnapshotProof { hash, device, proof: r.array()? })
                })
                .collect::<Result<Vec<_>, SnapshotError>>()?;
        }
        documents.push(SnapshotDocument { document, kind, saved, changes, proofs });
    }
    if r.at != bytes.len() {
        return Err(SnapshotError::Malformed(r.at));
    }
    Ok((header, documents))
}

/// Checks that part `index` of a bootstrap belongs with the first part's header.
pub fn check_part(first: &PartHeader, index: u32, header: &PartHeader) -> Result<(), SnapshotError> {
    if header.snapshot != first.snapshot || header.seq != first.seq || header.parts != first.parts {
        return Err(SnapshotError::Mismatched(format!("part {index} belongs to another snapshot")));
    }
    if header.part != index {
        return Err(SnapshotError::Mismatched(format!("part {index} says it is part {}", header.part)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(n: u8, changes: usize, size: usize) -> SnapshotDocument {
        SnapshotDocument {
            document: DocumentId::from_uuid(uuid::Uuid::from_bytes([n; 16])),
            kind: 1,
            saved: n.is_multiple_of(2).then(|| vec![n; size]),
            changes: (0..changes)
                .map(|i| SnapshotChange {
                    device: DeviceId::from_uuid(uuid::Uuid::from_bytes([i as u8; 16])),
                    bytes: vec![n; size],
                })
                .collect(),
            proofs: (0..changes)
                .map(|i| SnapshotProof {
                    hash: [i as u8; 32],
                    device: DeviceId::from_uuid(uuid::Uuid::from_bytes([i as u8; 16])),
                    proof: [n; PROOF_LEN],
                })
                .collect(),
        }
    }

    #[test]
    fn parts_round_trip_and_stay_near_the_size_asked() {
        let documents: Vec<_> = (0..50).map(|n| document(n, 2, 100)).collect();
        let parts = pack([7; 16], 42, &documents, 2_000);
        assert!(parts.len() > 3, "{} parts", parts.len());
        let mut back = Vec::new();
        let first = unpack(&parts[0]).unwrap().0;
        for (index, part) in parts.iter().enumerate() {
            assert!(part.len() <= 2_000, "part {index} is {} bytes", part.len());
            let (header, docs) = unpack(part).unwrap();
            check_part(&first, index as u32, &header).unwrap();
            assert_eq!((header.seq, header.parts), (42, parts.len() as u32));
            back.extend(docs);
        }
        assert_eq!(back, documents);
        assert_eq!(pack([0; 16], 0, &[], 1_000).len(), 1, "an empty workspace has a one-part snapshot");
    }

    #[test]
    fn every_truncation_and_a_lying_count_are_refused() {
        let part = pack([7; 16], 3, &[document(2, 1, 10)], 10_000).remove(0);
        for len in 0..part.len() {
            assert!(unpack(&part[..len]).is_err(), "a part cut at {len} bytes is refused");
        }
        let mut longer = part.clone();
        longer.push(0);
        assert!(matches!(unpack(&longer), Err(SnapshotError::Malformed(_))));
        let mut lying = part.clone();
        lying[HEADER_LEN - 4..HEADER_LEN].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(unpack(&lying), Err(SnapshotError::Malformed(_))));
        let mut newer = part;
        newer[4] = 3;
        assert_eq!(unpack(&newer), Err(SnapshotError::UnsupportedVersion(3)));
    }

    #[test]
    fn parts_of_another_snapshot_are_told_apart() {
        let a = unpack(&pack([1; 16], 5, &[], 100)[0]).unwrap().0;
        let b = PartHeader { snapshot: [2; 16], ..a };
        assert!(check_part(&a, 0, &b).is_err());
        assert!(check_part(&a, 0, &PartHeader { seq: 6, ..a }).is_err(), "a different log position");
        assert!(check_part(&a, 1, &a).is_err(), "a part in the wrong place");
    }

    fn golden_document() -> SnapshotDocument {
        SnapshotDocument {
            document: DocumentId::from_uuid(uuid::Uuid::from_bytes([0xAB; 16])),
            kind: 1,
            saved: Some(vec![1, 2, 3]),
            changes: vec![SnapshotChange {
                device: DeviceId::from_uuid(uuid::Uuid::from_bytes([0xCD; 16])),
                bytes: vec![9],
            }],
            proofs: vec![SnapshotProof {
                hash: [0xEF; 32],
                device: DeviceId::from_uuid(uuid::Uuid::from_bytes([0xCD; 16])),
                proof: [0x77; PROOF_LEN],
            }],
        }
    }

    const GOLDEN_DOCUMENT: &str = concat!(
        "abababababababababababababababab",
        "01",
        "00000003",
        "010203",
        "00000001",
        "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
        "00000001",
        "09"
    );

    #[test]
    fn format_2_is_frozen() {
        let part = pack([0x11; 16], 258, &[golden_document()], 1 << 20).remove(0);
        let proof = format!("00000001{}{}{}", "ef".repeat(32), "cd".repeat(16), "77".repeat(PROOF_LEN));
        let header = "44534e5002111111111111111111111111111111110000000000000102000000000000000100000001";
        assert_eq!(hex::encode(part), format!("{header}{GOLDEN_DOCUMENT}{proof}"));
    }

    #[test]
    fn format_1_is_still_read_without_proofs() {
        let header = "44534e5001111111111111111111111111111111110000000000000102000000000000000100000001";
        let part = hex::decode(format!("{header}{GOLDEN_DOCUMENT}")).unwrap();
        let (header, documents) = unpack(&part).unwrap();
        assert_eq!((header.seq, header.parts), (258, 1));
        assert_eq!(documents, [SnapshotDocument { proofs: Vec::new(), ..golden_document() }]);
    }
}

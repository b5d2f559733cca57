//! Backup files (format 1). Issue 6 is in progress: this crate is the file format; taking a
//! consistent snapshot of the store, scheduling, retention and restore come next.
//!
//! A backup file is
//!
//! ```text
//! "DAFTARBK" · u16 format (1) · u32 header length · header (JSON, plaintext) · chunks…
//! chunk: u32 sealed length · AES-256-GCM(body bytes ≤ 1 MiB) with its 16-byte tag
//! ```
//!
//! The header names what the backup holds (workspace, device, time, counts, document heads)
//! and can be read without the key; it is also authenticated, because every chunk's
//! associated data is the SHA-256 of the header, the chunk's index and whether it is the last.
//! So a changed header, a flipped bit anywhere, chunks swapped, dropped or cut short, and the
//! wrong key are all refused — and the last-chunk flag means a file cut at a chunk boundary is
//! refused too. Nonces are a random 4-byte prefix (in the header) and the chunk index; each
//! backup has its own random 32-byte salt, and the file key is HKDF(backup key, salt), so no
//! two backups share a key.
//!
//! Files are written beside their final name and renamed only after `fsync`, so a crash or a
//! full disk never leaves a file that could pass for a backup under that name.

use std::io::{Read, Write};
use std::path::Path;

use daftar_keys::Secret;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 8] = b"DAFTARBK";
/// The format this build writes and reads.
pub const FORMAT: u16 = 1;
const CHUNK: usize = 1 << 20;
const TAG: usize = 16;
const MAX_HEADER: u32 = 16 << 20;

/// What a backup says about itself, readable without the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub workspace: String,
    pub device: String,
    /// RFC 3339.
    pub created_at: String,
    pub counts: Counts,
    /// SHA-256 over every document id and its heads, hex: compared after a restore.
    pub heads_digest: String,
    /// The body's length in bytes, before encryption.
    pub body_bytes: u64,
    /// Random per backup: the file key's HKDF salt (hex) and the nonces' prefix (hex).
    pub salt: String,
    pub nonce_prefix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Counts {
    pub documents: u64,
    pub invoices: u64,
    pub customers: u64,
    pub items: u64,
}

/// A backup file could not be written or read, or does not hold.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0} is not a Daftar backup (it does not start with DAFTARBK)")]
    NotABackup(String),
    #[error("{path} is a backup of format {found}; this Daftar reads format {FORMAT} — update Daftar to restore it")]
    UnsupportedFormat { path: String, found: u16 },
    #[error("{path} is cut short ({detail}): the file is incomplete; use another backup")]
    Truncated { path: String, detail: String },
    #[error("{path}: its header is damaged ({detail})")]
    BadHeader { path: String, detail: String },
    #[error(
        "{path}: chunk {chunk} does not decrypt: the file was altered or damaged, or the key is not this workspace's (check the recovery key)"
    )]
    Tampered { path: String, chunk: u64 },
    #[error("{path}: the body is {found} bytes but the header says {expected}: the file was altered")]
    LengthMismatch { path: String, found: u64, expected: u64 },
    #[error("no randomness available")]
    Random,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

struct Len32;
impl ring::hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

fn file_key(backup_key: &Secret<32>, salt: &[u8]) -> LessSafeKey {
    let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, salt).extract(backup_key.expose_secret_bytes());
    let info = [b"daftar backup file v1".as_slice()];
    let okm = prk.expand(&info, Len32).expect("32 bytes is a valid length");
    let mut key = [0u8; 32];
    okm.fill(&mut key).expect("32 bytes fill");
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("a 32-byte AES key"))
}

fn nonce(prefix: &[u8; 4], index: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(prefix);
    bytes[4..].copy_from_slice(&index.to_be_bytes());
    Nonce::assume_unique_for_key(bytes)
}

fn aad(header_digest: &[u8], index: u64, last: bool) -> Vec<u8> {
    let mut out = header_digest.to_vec();
    out.extend_from_slice(&index.to_be_bytes());
    out.push(u8::from(last));
    out
}

/// Writes a backup of `body` to `path` atomically. `header`'s salt, nonce prefix and body
/// length are filled in here.
pub fn write(path: &Path, mut header: Header, body: &[u8], backup_key: &Secret<32>) -> Result<Header, BackupError> {
    let io = |source: std::io::Error| BackupError::Io { path: path.display().to_string(), source };
    let random = ring::rand::SystemRandom::new();
    let mut salt = [0u8; 32];
    let mut prefix = [0u8; 4];
    ring::rand::SecureRandom::fill(&random, &mut salt).map_err(|_| BackupError::Random)?;
    ring::rand::SecureRandom::fill(&random, &mut prefix).map_err(|_| BackupError::Random)?;
    header.salt = hex(&salt);
    header.nonce_prefix = hex(&prefix);
    header.body_bytes = body.len() as u64;
    let header_bytes = serde_json::to_vec(&header).expect("a header serialises");
    let digest = ring::digest::digest(&ring::digest::SHA256, &header_bytes);
    let key = file_key(backup_key, &salt);
    let partial = path.with_file_name(format!(
        ".{}.partial",
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    ));
    let mut file = std::fs::File::create(&partial).map_err(io)?;
    let mut out = std::io::BufWriter::new(&mut file);
    out.write_all(MAGIC).map_err(io)?;
    out.write_all(&FORMAT.to_be_bytes()).map_err(io)?;
    out.write_all(&(header_bytes.len() as u32).to_be_bytes()).map_err(io)?;
    out.write_all(&header_bytes).map_err(io)?;
    let chunks: Vec<&[u8]> = if body.is_empty() { vec![&[][..]] } else { body.chunks(CHUNK).collect() };
    for (index, chunk) in chunks.iter().enumerate() {
        let last = index + 1 == chunks.len();
        let mut sealed = chunk.to_vec();
        key.seal_in_place_append_tag(
            nonce(&prefix, index as u64),
            Aad::from(aad(digest.as_ref(), index as u64, last)),
            &mut sealed,
        )
        .expect("sealing a chunk of at most 1 MiB");
        out.write_all(&(sealed.len() as u32).to_be_bytes()).map_err(io)?;
        out.write_all(&sealed).map_err(io)?;
    }
    out.flush().map_err(io)?;
    drop(out);
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&partial, path).map_err(io)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(header)
}

fn read_exact(reader: &mut impl Read, buffer: &mut [u8], path: &Path, what: &str) -> Result<(), BackupError> {
    reader.read_exact(buffer).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            BackupError::Truncated { path: path.display().to_string(), detail: format!("it ends inside the {what}") }
        }
        _ => BackupError::Io { path: path.display().to_string(), source: e },
    })
}

/// Reads a backup's header without the key (and without trusting it: `decrypt` authenticates
/// it).
pub fn read_header(path: &Path) -> Result<Header, BackupError> {
    let mut file =
        std::fs::File::open(path).map_err(|source| BackupError::Io { path: path.display().to_string(), source })?;
    Ok(header_of(&mut file, path)?.0)
}

fn header_of(reader: &mut impl Read, path: &Path) -> Result<(Header, Vec<u8>), BackupError> {
    let name = path.display().to_string();
    let mut magic = [0u8; 8];
    reader.read_exact(&mut magic).map_err(|_| BackupError::NotABackup(name.clone()))?;
    if &magic != MAGIC {
        return Err(BackupError::NotABackup(name));
    }
    let mut format = [0u8; 2];
    read_exact(reader, &mut format, path, "format number")?;
    let format = u16::from_be_bytes(format);
    if format != FORMAT {
        return Err(BackupError::UnsupportedFormat { path: name, found: format });
    }
    let mut length = [0u8; 4];
    read_exact(reader, &mut length, path, "header length")?;
    let length = u32::from_be_bytes(length);
    if length > MAX_HEADER {
        return Err(BackupError::BadHeader { path: name, detail: format!("a header of {length} bytes") });
    }
    let mut bytes = vec![0u8; length as usize];
    read_exact(reader, &mut bytes, path, "header")?;
    let header: Header = serde_json::from_slice(&bytes)
        .map_err(|e| BackupError::BadHeader { path: name.clone(), detail: e.to_string() })?;
    Ok((header, bytes))
}

/// Reads, authenticates and decrypts a whole backup: its header and body.
pub fn decrypt(path: &Path, backup_key: &Secret<32>) -> Result<(Header, Vec<u8>), BackupError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| BackupError::Io { path: name.clone(), source })?;
    let mut reader = std::io::BufReader::new(file);
    let (header, header_bytes) = header_of(&mut reader, path)?;
    let bad = |detail: &str| BackupError::BadHeader { path: name.clone(), detail: detail.to_owned() };
    let salt = unhex(&header.salt).filter(|s| s.len() == 32).ok_or_else(|| bad("its salt is not 32 bytes of hex"))?;
    let prefix: [u8; 4] = unhex(&header.nonce_prefix)
        .and_then(|p| p.try_into().ok())
        .ok_or_else(|| bad("its nonce prefix is not 4 bytes of hex"))?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &header_bytes);
    let key = file_key(backup_key, &salt);
    let mut body = Vec::with_capacity(header.body_bytes.min(1 << 30) as usize);
    let mut index = 0u64;
    loop {
        let mut length = [0u8; 4];
        match reader.read(&mut length[..1]) {
            Ok(0) => {
                return Err(BackupError::Truncated {
                    path: name,
                    detail: format!("no last chunk after {index} chunk(s)"),
                });
            }
            Ok(_) => read_exact(&mut reader, &mut length[1..], path, "chunk length")?,
            Err(source) => return Err(BackupError::Io { path: name, source }),
        }
        let length = u32::from_be_bytes(length) as usize;
        if !(TAG..=CHUNK + TAG).contains(&length) {
            return Err(BackupError::Tampered { path: name, chunk: index });
        }
        let mut sealed = vec![0u8; length];
        read_exact(&mut reader, &mut sealed, path, &format!("chunk {index}"))?;
        // The last chunk is the one that opens with the last flag set.
        let mut opened = None;
        for last in [false, true] {
            let mut attempt = sealed.clone();
            if let Ok(plain) =
                key.open_in_place(nonce(&prefix, index), Aad::from(aad(digest.as_ref(), index, last)), &mut attempt)
            {
                opened = Some((plain.to_vec(), last));
                break;
            }
        }
        let (plain, last) = opened.ok_or(BackupError::Tampered { path: name.clone(), chunk: index })?;
        body.extend_from_slice(&plain);
        index += 1;
        if last {
            let mut rest = [0u8; 1];
            if reader.read(&mut rest).map_err(|source| BackupError::Io { path: name.clone(), source })? != 0 {
                return Err(BackupError::Tampered { path: name, chunk: index });
            }
            break;
        }
    }
    if body.len() as u64 != header.body_bytes {
        return Err(BackupError::LengthMismatch { path: name, found: body.len() as u64, expected: header.body_bytes });
    }
    Ok((header, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            workspace: "ws".into(),
            device: "dev".into(),
            created_at: "2026-11-30T04:00:00Z".into(),
            counts: Counts { documents: 3, invoices: 1, customers: 1, items: 1 },
            heads_digest: "00".into(),
            body_bytes: 0,
            salt: String::new(),
            nonce_prefix: String::new(),
        }
    }

    fn key(byte: u8) -> Secret<32> {
        Secret::new([byte; 32])
    }

    #[test]
    fn a_backup_round_trips_and_its_header_reads_without_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.daftar-backup");
        let body: Vec<u8> = (0..(CHUNK * 2 + 123)).map(|i| (i % 251) as u8).collect();
        let written = write(&path, header(), &body, &key(1)).unwrap();
        assert_eq!(read_header(&path).unwrap(), written);
        let (read, decrypted) = decrypt(&path, &key(1)).unwrap();
        assert_eq!(read, written);
        assert_eq!(decrypted, body);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "no partial file left: {names:?}");
        assert!(matches!(decrypt(&path, &key(2)), Err(BackupError::Tampered { chunk: 0, .. })), "a wrong key");
    }

    #[test]
    fn every_flipped_bit_and_every_truncation_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b");
        let body: Vec<u8> = (0..300u32).flat_map(|i| i.to_be_bytes()).collect();
        write(&path, header(), &body, &key(7)).unwrap();
        let good = std::fs::read(&path).unwrap();
        let bad = dir.path().join("bad");
        for at in 0..good.len() {
            for bit in [0u8, 3, 7] {
                let mut flipped = good.clone();
                flipped[at] ^= 1 << bit;
                std::fs::write(&bad, &flipped).unwrap();
                assert!(decrypt(&bad, &key(7)).is_err(), "a flipped bit {bit} at byte {at} was accepted");
            }
        }
        for length in 0..good.len() {
            std::fs::write(&bad, &good[..length]).unwrap();
            assert!(decrypt(&bad, &key(7)).is_err(), "a file cut at {length} bytes was accepted");
        }
        let mut longer = good.clone();
        longer.push(0);
        std::fs::write(&bad, &longer).unwrap();
        assert!(decrypt(&bad, &key(7)).is_err(), "trailing bytes were accepted");
        std::fs::write(&bad, b"not a backup at all").unwrap();
        assert!(matches!(decrypt(&bad, &key(7)), Err(BackupError::NotABackup(_))));
    }
}

//! The backup file, format 1:
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
//! The body is written and read as a stream, one chunk in memory at a time. Files are written
//! beside their final name (`.NAME.partial`) and renamed only after `fsync`; a writer dropped
//! before it finishes (an error, a full disk) removes its partial file, and one killed leaves a
//! `.partial` that is never listed as a backup and is swept by the next backup.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use daftar_keys::Secret;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};

use crate::BackupError;

const MAGIC: &[u8; 8] = b"DAFTARBK";
/// The format this build writes and reads.
pub const FORMAT: u16 = 1;
const CHUNK: usize = 1 << 20;
const TAG: usize = 16;
const MAX_HEADER: u32 = 1 << 20;

/// What a backup says about itself, readable without the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub workspace: String,
    /// The device that made it, and that device's name.
    pub device: String,
    pub device_name: String,
    /// RFC 3339, UTC, milliseconds.
    pub created_at: String,
    /// The Daftar version that wrote it.
    pub app_version: String,
    pub counts: daftar_store::BackupCounts,
    /// SHA-256 over every document id and its heads (see `daftar_store::HeadsDigest`).
    pub heads_digest: String,
    /// How many snapshot parts the body holds.
    pub parts: u32,
    pub key: KeyInfo,
    /// Random per backup: the file key's HKDF salt (hex) and the nonces' prefix (hex).
    pub salt: String,
    pub nonce_prefix: String,
}

/// How the backup key is found again (see ARCHITECTURE.md, "Backups"): the workspace key of
/// `epoch` — which every device of the workspace holds — wrapped by the recovery key exactly as
/// the relay keeps it, so the recovery key alone opens the backup on a new machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub epoch: u32,
    /// Hex of the recovery-wrapped workspace key.
    pub recovery_wrapped_workspace_key: String,
    /// Hex of the recovery signing key's public half (a restored device hands it to relays).
    pub recovery_public_key: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
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

/// The name a backup is written under until it is complete.
pub fn partial_name(path: &Path) -> PathBuf {
    path.with_file_name(format!(
        ".{}.partial",
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    ))
}

/// A backup being written. Nothing is at `path` until [`Writer::finish`] returns.
#[derive(Debug)]
pub struct Writer {
    path: PathBuf,
    partial: PathBuf,
    out: Option<BufWriter<std::fs::File>>,
    key: LessSafeKey,
    prefix: [u8; 4],
    digest: Vec<u8>,
    index: u64,
    buffer: Vec<u8>,
    bytes: u64,
    /// Set once the file has its name; until then, dropping the writer removes the partial file.
    renamed: bool,
}

impl Writer {
    /// Starts a backup at `path`. `header`'s salt and nonce prefix are filled in here; the
    /// header returned is the one written.
    pub fn create(path: &Path, mut header: Header, backup_key: &Secret<32>) -> Result<(Writer, Header), BackupError> {
        let random = ring::rand::SystemRandom::new();
        let mut salt = [0u8; 32];
        let mut prefix = [0u8; 4];
        ring::rand::SecureRandom::fill(&random, &mut salt).map_err(|_| BackupError::Random)?;
        ring::rand::SecureRandom::fill(&random, &mut prefix).map_err(|_| BackupError::Random)?;
        header.salt = hex(&salt);
        header.nonce_prefix = hex(&prefix);
        let header_bytes = serde_json::to_vec(&header).expect("a header serialises");
        let partial = partial_name(path);
        let io = |source| BackupError::Io { path: partial.display().to_string(), source };
        let file = std::fs::File::create(&partial).map_err(io)?;
        let mut writer = Writer {
            path: path.to_owned(),
            partial: partial.clone(),
            out: Some(BufWriter::with_capacity(CHUNK + 64, file)),
            key: file_key(backup_key, &salt),
            prefix,
            digest: ring::digest::digest(&ring::digest::SHA256, &header_bytes).as_ref().to_vec(),
            index: 0,
            buffer: Vec::with_capacity(CHUNK * 2),
            bytes: 0,
            renamed: false,
        };
        let mut start = MAGIC.to_vec();
        start.extend_from_slice(&FORMAT.to_be_bytes());
        start.extend_from_slice(&(header_bytes.len() as u32).to_be_bytes());
        start.extend_from_slice(&header_bytes);
        writer.emit(&start)?;
        Ok((writer, header))
    }

    fn emit(&mut self, bytes: &[u8]) -> Result<(), BackupError> {
        let out = self.out.as_mut().expect("open until finished");
        out.write_all(bytes).map_err(|source| BackupError::Io { path: self.partial.display().to_string(), source })?;
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    fn seal(&mut self, length: usize, last: bool) -> Result<(), BackupError> {
        let mut sealed: Vec<u8> = self.buffer.drain(..length).collect();
        self.key
            .seal_in_place_append_tag(
                nonce(&self.prefix, self.index),
                Aad::from(aad(&self.digest, self.index, last)),
                &mut sealed,
            )
            .expect("sealing a chunk of at most 1 MiB");
        self.index += 1;
        self.emit(&(sealed.len() as u32).to_be_bytes())?;
        self.emit(&sealed)
    }

    /// Appends body bytes.
    pub fn write(&mut self, data: &[u8]) -> Result<(), BackupError> {
        self.buffer.extend_from_slice(data);
        // Strictly more than a chunk: the last chunk is sealed by `finish`, never empty
        // unless the whole body is.
        while self.buffer.len() > CHUNK {
            self.seal(CHUNK, false)?;
        }
        Ok(())
    }

    /// Seals the last chunk, makes the file durable and gives it its name. Returns the file's
    /// size.
    pub fn finish(mut self) -> Result<u64, BackupError> {
        let length = self.buffer.len();
        self.seal(length, true)?;
        let io = |source| BackupError::Io { path: self.partial.display().to_string(), source };
        let file = self.out.take().expect("open until finished").into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&self.partial, &self.path).map_err(io)?;
        self.renamed = true;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Ok(self.bytes)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.renamed {
            // Not finished (an error, a full disk): leave nothing behind.
            drop(self.out.take());
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

fn read_exact(reader: &mut impl Read, buffer: &mut [u8], path: &Path, what: &str) -> Result<(), BackupError> {
    reader.read_exact(buffer).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            BackupError::Truncated { path: path.display().to_string(), detail: format!("it ends inside the {what}") }
        }
        _ => BackupError::Io { path: path.display().to_string(), source: e },
    })
}

/// Reads a backup's header without the key (and without trusting it: [`Reader`] authenticates
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

/// A backup's body, authenticated and decrypted one chunk at a time.
#[derive(Debug)]
pub struct Reader {
    path: PathBuf,
    reader: BufReader<std::fs::File>,
    key: LessSafeKey,
    prefix: [u8; 4],
    digest: Vec<u8>,
    index: u64,
    plain: Vec<u8>,
    at: usize,
    ended: bool,
}

impl Reader {
    /// Opens a backup with its backup key. The header is returned as the file holds it; it is
    /// authenticated by the first chunk that opens.
    pub fn open(path: &Path, backup_key: &Secret<32>) -> Result<(Header, Reader), BackupError> {
        let name = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|source| BackupError::Io { path: name.clone(), source })?;
        let mut reader = BufReader::with_capacity(CHUNK + 64, file);
        let (header, header_bytes) = header_of(&mut reader, path)?;
        let bad = |detail: &str| BackupError::BadHeader { path: name.clone(), detail: detail.to_owned() };
        let salt =
            unhex(&header.salt).filter(|s| s.len() == 32).ok_or_else(|| bad("its salt is not 32 bytes of hex"))?;
        let prefix: [u8; 4] = unhex(&header.nonce_prefix)
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| bad("its nonce prefix is not 4 bytes of hex"))?;
        let mut reader = Reader {
            path: path.to_owned(),
            reader,
            key: file_key(backup_key, &salt),
            prefix,
            digest: ring::digest::digest(&ring::digest::SHA256, &header_bytes).as_ref().to_vec(),
            index: 0,
            plain: Vec::new(),
            at: 0,
            ended: false,
        };
        // Open the first chunk now: a wrong key or a changed header is found before any use.
        reader.next_chunk()?;
        Ok((header, reader))
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }

    /// Reads, authenticates and decrypts the next chunk into `plain`.
    fn next_chunk(&mut self) -> Result<(), BackupError> {
        let mut length = [0u8; 4];
        match self.reader.read(&mut length[..1]) {
            Ok(0) => {
                return Err(BackupError::Truncated {
                    path: self.name(),
                    detail: format!("no last chunk after {} chunk(s)", self.index),
                });
            }
            Ok(_) => read_exact(&mut self.reader, &mut length[1..], &self.path, "chunk length")?,
            Err(source) => return Err(BackupError::Io { path: self.name(), source }),
        }
        let length = u32::from_be_bytes(length) as usize;
        if !(TAG..=CHUNK + TAG).contains(&length) {
            return Err(BackupError::Tampered { path: self.name(), chunk: self.index });
        }
        let mut sealed = vec![0u8; length];
        read_exact(&mut self.reader, &mut sealed, &self.path.clone(), &format!("chunk {}", self.index))?;
        // The last chunk is the one that opens with the last flag set.
        let mut opened = None;
        for last in [false, true] {
            let mut attempt = sealed.clone();
            let aad = Aad::from(aad(&self.digest, self.index, last));
            if let Ok(plain) = self.key.open_in_place(nonce(&self.prefix, self.index), aad, &mut attempt) {
                let length = plain.len();
                attempt.truncate(length);
                opened = Some((attempt, last));
                break;
            }
        }
        let (plain, last) = opened.ok_or(BackupError::Tampered { path: self.name(), chunk: self.index })?;
        self.index += 1;
        if last {
            let mut rest = [0u8; 1];
            if self.reader.read(&mut rest).map_err(|source| BackupError::Io { path: self.name(), source })? != 0 {
                return Err(BackupError::Tampered { path: self.name(), chunk: self.index });
            }
            self.ended = true;
        }
        self.plain = plain;
        self.at = 0;
        Ok(())
    }

    /// Exactly `n` body bytes; a body that ends first is refused.
    pub fn take(&mut self, n: usize) -> Result<Vec<u8>, BackupError> {
        let mut out = Vec::with_capacity(n.min(64 << 20));
        while out.len() < n {
            if self.at == self.plain.len() {
                if self.ended {
                    return Err(BackupError::Damaged {
                        path: self.name(),
                        detail: "the body ends inside a part".into(),
                    });
                }
                self.next_chunk()?;
                continue;
            }
            let take = (n - out.len()).min(self.plain.len() - self.at);
            out.extend_from_slice(&self.plain[self.at..self.at + take]);
            self.at += take;
        }
        Ok(out)
    }

    /// Whether the whole body has been read (reading any chunk that remains).
    pub fn at_end(&mut self) -> Result<bool, BackupError> {
        while self.at == self.plain.len() && !self.ended {
            self.next_chunk()?;
        }
        Ok(self.at == self.plain.len() && self.ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            workspace: "ws".into(),
            device: "dev".into(),
            device_name: "office".into(),
            created_at: "2026-11-30T04:00:00Z".into(),
            app_version: "0.1.0".into(),
            counts: daftar_store::BackupCounts { documents: 3, invoices: 1, customers: 1, items: 1 },
            heads_digest: "00".into(),
            parts: 1,
            key: KeyInfo { epoch: 1, recovery_wrapped_workspace_key: "00".into(), recovery_public_key: "00".into() },
            salt: String::new(),
            nonce_prefix: String::new(),
        }
    }

    fn key(byte: u8) -> Secret<32> {
        Secret::new([byte; 32])
    }

    fn write(path: &Path, body: &[u8], key: &Secret<32>) -> Header {
        let (mut writer, header) = Writer::create(path, header(), key).unwrap();
        for piece in body.chunks(77_777) {
            writer.write(piece).unwrap();
        }
        writer.finish().unwrap();
        header
    }

    fn decrypt(path: &Path, key: &Secret<32>) -> Result<(Header, Vec<u8>), BackupError> {
        let (header, mut reader) = Reader::open(path, key)?;
        let mut body = Vec::new();
        while !reader.at_end()? {
            body.extend(reader.take(1)?);
        }
        Ok((header, body))
    }

    #[test]
    fn a_backup_round_trips_and_its_header_reads_without_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.daftar-backup");
        let body: Vec<u8> = (0..(CHUNK * 2 + 123)).map(|i| (i % 251) as u8).collect();
        let written = write(&path, &body, &key(1));
        assert_eq!(read_header(&path).unwrap(), written);
        let (read, decrypted) = decrypt(&path, &key(1)).unwrap();
        assert_eq!(read, written);
        assert_eq!(decrypted, body);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "no partial file left: {names:?}");
        assert!(matches!(decrypt(&path, &key(2)), Err(BackupError::Tampered { chunk: 0, .. })), "a wrong key");
    }

    #[test]
    fn a_writer_dropped_before_it_finishes_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.daftar-backup");
        let (mut writer, _) = Writer::create(&path, header(), &key(1)).unwrap();
        writer.write(&vec![7u8; CHUNK * 3]).unwrap();
        drop(writer);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn every_flipped_bit_and_every_truncation_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b");
        let body: Vec<u8> = (0..300u32).flat_map(|i| i.to_be_bytes()).collect();
        write(&path, &body, &key(7));
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

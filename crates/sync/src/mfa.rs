//! Time-based one-time passwords (RFC 6238, the codes authenticator apps show) and recovery
//! codes, for owners and admins. The relay holds each enrolled device's TOTP secret and checks
//! codes on privileged requests; this module is the arithmetic, without I/O or clocks.
//!
//! - Codes: HMAC-SHA1, 30-second steps, 6 digits — what every authenticator app assumes from
//!   an `otpauth://totp/…` URI without parameters.
//! - A code is accepted for its own step and one step either side (clock drift), and each step
//!   at most once: a code is accepted only for a step later than the last one accepted, so a
//!   code seen over someone's shoulder cannot be replayed.
//! - Recovery codes: ten random codes of 50 bits (`XXXXX-XXXXX`, Crockford base 32); only
//!   their SHA-256 is kept, and each works once.

use ring::rand::{SecureRandom, SystemRandom};

/// Seconds per TOTP step.
pub const STEP_SECONDS: u64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// How many recovery codes an enrolment makes.
pub const RECOVERY_CODES: usize = 10;

/// A one-time password or recovery code was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MfaError {
    #[error("a one-time code has {DIGITS} digits (got {0:?})")]
    Malformed(String),
    #[error("the one-time code is wrong or has expired; use the code your authenticator app shows now")]
    Wrong,
    #[error("this one-time code was already used; wait for the next one")]
    Reused,
    #[error("that is not one of this account's unused recovery codes")]
    WrongRecoveryCode,
    #[error("the system random number generator failed")]
    Random,
}

/// A TOTP secret (160 bits, as RFC 4226 recommends).
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret([u8; 20]);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret([redacted])")
    }
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

fn base32(bytes: &[u8], alphabet: &[u8; 32]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut buffer, mut bits) = (0u32, 0);
    for byte in bytes {
        buffer = (buffer << 8) | u32::from(*byte);
        bits += 8;
        while bits >= 5 {
            out.push(char::from(alphabet[((buffer >> (bits - 5)) & 31) as usize]));
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(char::from(alphabet[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

fn unbase32(text: &str) -> Option<Vec<u8>> {
    let (mut buffer, mut bits, mut out) = (0u32, 0, Vec::new());
    for c in text.chars().filter(|c| !c.is_whitespace() && *c != '=') {
        let value = BASE32.iter().position(|b| char::from(*b) == c.to_ascii_uppercase())? as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            out.push((buffer >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    Some(out)
}

impl TotpSecret {
    pub fn generate() -> Result<Self, MfaError> {
        let mut bytes = [0u8; 20];
        SystemRandom::new().fill(&mut bytes).map_err(|_| MfaError::Random)?;
        Ok(Self(bytes))
    }

    pub fn from_bytes(bytes: [u8; 20]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// The secret as authenticator apps take it typed in (RFC 4648 base 32, no padding).
    pub fn to_base32(&self) -> String {
        base32(&self.0, BASE32)
    }

    /// Reads the base-32 form back.
    pub fn from_base32(text: &str) -> Option<Self> {
        unbase32(text)?.try_into().ok().map(Self)
    }

    /// The `otpauth://` URI an authenticator app scans from a QR code.
    pub fn otpauth_uri(&self, account: &str) -> String {
        let label: String = format!("Daftar:{account}")
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => char::from(b).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        format!(
            "otpauth://totp/{label}?secret={}&issuer=Daftar&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
            self.to_base32()
        )
    }

    /// The code for TOTP step `step` (HOTP of the step counter, RFC 4226 dynamic truncation).
    pub fn code_at(&self, step: u64) -> u32 {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &self.0);
        let tag = ring::hmac::sign(&key, &step.to_be_bytes());
        let mac = tag.as_ref();
        let offset = usize::from(mac[19] & 0x0F);
        let binary = u32::from_be_bytes(mac[offset..offset + 4].try_into().expect("4 bytes")) & 0x7FFF_FFFF;
        binary % 10u32.pow(DIGITS)
    }

    /// The code shown at `unix_seconds`, zero-padded.
    pub fn code_now(&self, unix_seconds: u64) -> String {
        format!("{:0width$}", self.code_at(unix_seconds / STEP_SECONDS), width = DIGITS as usize)
    }

    /// Checks `code` at `unix_seconds`, given the last step accepted before (if any). Returns
    /// the step it matched, to be remembered as the new last one.
    pub fn verify(&self, code: &str, unix_seconds: u64, last_step: Option<u64>) -> Result<u64, MfaError> {
        let code = code.trim().replace(' ', "");
        if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MfaError::Malformed(code));
        }
        let value: u32 = code.parse().map_err(|_| MfaError::Malformed(code.clone()))?;
        let now = unix_seconds / STEP_SECONDS;
        let matched = [now.checked_sub(1), Some(now), Some(now + 1)]
            .into_iter()
            .flatten()
            .find(|step| self.code_at(*step) == value);
        match matched {
            None => Err(MfaError::Wrong),
            Some(step) if last_step.is_some_and(|last| step <= last) => Err(MfaError::Reused),
            Some(step) => Ok(step),
        }
    }
}

/// Ten fresh recovery codes, as shown to the person once, and the hashes to keep.
pub fn recovery_codes() -> Result<(Vec<String>, Vec<[u8; 32]>), MfaError> {
    let random = SystemRandom::new();
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        let mut bytes = [0u8; 7];
        random.fill(&mut bytes).map_err(|_| MfaError::Random)?;
        let text = base32(&bytes, CROCKFORD);
        codes.push(format!("{}-{}", &text[..5], &text[5..10]));
    }
    let hashes = codes.iter().map(|c| recovery_hash(c).expect("a code just made reads back")).collect();
    Ok((codes, hashes))
}

/// The hash a recovery code is kept as; `None` if `typed` cannot be a recovery code. Typing is
/// forgiven as with the recovery key: case, spaces, a missing dash, `O`/`I`/`L` for `0`/`1`.
pub fn recovery_hash(typed: &str) -> Option<[u8; 32]> {
    let normalised: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            other => other,
        })
        .collect();
    if normalised.len() != 10 || !normalised.bytes().all(|b| CROCKFORD.contains(&b)) {
        return None;
    }
    let mut input = b"daftar recovery code v1".to_vec();
    input.extend_from_slice(normalised.as_bytes());
    Some(ring::digest::digest(&ring::digest::SHA256, &input).as_ref().try_into().expect("32 bytes"))
}

/// Uses a recovery code: removes its hash from `unused` if it is there.
pub fn use_recovery_code(unused: &mut Vec<[u8; 32]>, typed: &str) -> Result<(), MfaError> {
    let hash = recovery_hash(typed).ok_or(MfaError::WrongRecoveryCode)?;
    let index = unused.iter().position(|h| *h == hash).ok_or(MfaError::WrongRecoveryCode)?;
    unused.remove(index);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1: the secret is the ASCII "12345678901234567890".
    #[test]
    fn rfc_6238_test_vectors() {
        let secret = TotpSecret::from_bytes(*b"12345678901234567890");
        for (time, eight_digits) in [
            (59u64, 94_287_082u32),
            (1_111_111_109, 7_081_804),
            (1_111_111_111, 14_050_471),
            (1_234_567_890, 89_005_924),
            (2_000_000_000, 69_279_037),
            (20_000_000_000, 65_353_130),
        ] {
            assert_eq!(secret.code_at(time / 30), eight_digits % 1_000_000, "at {time}");
        }
        assert_eq!(secret.code_now(59), "287082");
        assert_eq!(secret.to_base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(TotpSecret::from_base32("gezd gnbv gy3t qojq gezd gnbv gy3t qojq"), Some(secret));
    }

    #[test]
    fn a_code_works_for_its_step_and_one_either_side_and_only_once() {
        let secret = TotpSecret::generate().unwrap();
        let now = 1_800_000_015;
        let step = now / 30;
        let code = |s: u64| format!("{:06}", secret.code_at(s));
        assert_eq!(secret.verify(&code(step), now, None), Ok(step));
        assert_eq!(secret.verify(&code(step), now, Some(step)), Err(MfaError::Reused), "a reused code");
        assert_eq!(secret.verify(&code(step - 1), now, None), Ok(step - 1), "one step old");
        assert_eq!(secret.verify(&code(step + 1), now, None), Ok(step + 1), "one step early");
        assert_eq!(secret.verify(&code(step - 2), now, None), Err(MfaError::Wrong), "two steps old");
        assert_eq!(secret.verify(&code(step - 1), now, Some(step)), Err(MfaError::Reused), "older than the last");
        let wrong = format!("{:06}", (secret.code_at(step) + 1) % 1_000_000);
        assert_eq!(secret.verify(&wrong, now, None), Err(MfaError::Wrong));
        assert!(matches!(secret.verify("12345", now, None), Err(MfaError::Malformed(_))));
        assert!(matches!(secret.verify("abcdef", now, None), Err(MfaError::Malformed(_))));
    }

    #[test]
    fn recovery_codes_work_once_and_forgive_typing() {
        let (codes, mut unused) = recovery_codes().unwrap();
        assert_eq!(codes.len(), 10);
        assert!(codes.iter().all(|c| c.len() == 11 && c.as_bytes()[5] == b'-'), "{codes:?}");
        let sloppy = codes[3].to_lowercase().replace('-', " ");
        use_recovery_code(&mut unused, &sloppy).unwrap();
        assert_eq!(use_recovery_code(&mut unused, &codes[3]), Err(MfaError::WrongRecoveryCode), "only once");
        assert_eq!(unused.len(), 9);
        assert_eq!(use_recovery_code(&mut unused, "nonsense"), Err(MfaError::WrongRecoveryCode));
    }

    #[test]
    fn the_otpauth_uri_is_what_authenticator_apps_read() {
        let secret = TotpSecret::from_bytes(*b"12345678901234567890");
        assert_eq!(
            secret.otpauth_uri("Acme Trading owner"),
            "otpauth://totp/Daftar:Acme%20Trading%20owner?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Daftar&algorithm=SHA1&digits=6&period=30"
        );
    }
}

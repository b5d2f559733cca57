//! How a device proves itself to the relay: every request is signed with its Ed25519 key.
//!
//! The signed text is
//! `daftar-relay-v1 \n METHOD \n PATH?QUERY \n TIMESTAMP_MS \n NONCE \n hex(SHA-256(body))`, sent
//! in four headers; the random nonce keeps two identical requests in one millisecond distinct. The relay checks the device is enrolled in the workspace of the path and not revoked,
//! that the timestamp is within [`MAX_SKEW_MS`] of its clock, that the signature verifies, and
//! that it has not seen the same signature before (so a captured request cannot be replayed).

use daftar_domain::DeviceId;
use ring::signature::{ED25519, UnparsedPublicKey};

use crate::envelope::DeviceSigningKey;

/// The header carrying a one-time (TOTP) or recovery code on privileged requests. Not part of
/// the signature: it only ever travels with a signed request, over TLS.
pub const TOTP_HEADER: &str = "x-daftar-totp";
pub const DEVICE_HEADER: &str = "x-daftar-device";
pub const TIMESTAMP_HEADER: &str = "x-daftar-timestamp";
pub const SIGNATURE_HEADER: &str = "x-daftar-signature";
pub const NONCE_HEADER: &str = "x-daftar-nonce";
/// How far a request's timestamp may be from the relay's clock.
pub const MAX_SKEW_MS: i64 = 5 * 60 * 1000;

fn canonical(method: &str, path_and_query: &str, timestamp_ms: i64, nonce: &str, body: &[u8]) -> Vec<u8> {
    let digest = ring::digest::digest(&ring::digest::SHA256, body);
    let hex = hex::encode(digest.as_ref());
    format!("daftar-relay-v1\n{}\n{path_and_query}\n{timestamp_ms}\n{nonce}\n{hex}", method.to_ascii_uppercase())
        .into_bytes()
}

/// The three header values for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub device: String,
    pub timestamp: String,
    pub nonce: String,
    pub signature: String,
}

/// Signs a request as `device`.
pub fn sign(
    key: &DeviceSigningKey,
    device: DeviceId,
    method: &str,
    path_and_query: &str,
    timestamp_ms: i64,
    body: &[u8],
) -> SignedHeaders {
    use ring::rand::SecureRandom;
    let mut nonce = [0u8; 16];
    // The OS random source does not fail on the platforms Daftar runs on; a zero nonce would
    // only make two identical requests in one millisecond look like a replay.
    let _ = ring::rand::SystemRandom::new().fill(&mut nonce);
    let nonce = hex::encode(nonce);
    let signature = key.sign(&canonical(method, path_and_query, timestamp_ms, &nonce, body));
    SignedHeaders {
        device: device.to_string(),
        timestamp: timestamp_ms.to_string(),
        nonce,
        signature: hex::encode(signature),
    }
}

/// The parts of a request that its signature covers.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub path_and_query: &'a str,
    pub timestamp_ms: i64,
    pub nonce: &'a str,
    pub body: &'a [u8],
}

/// Whether `signature_hex` is `public_key`'s signature of `request`.
pub fn verify(public_key: &[u8; 32], request: SignedRequest<'_>, signature_hex: &str) -> bool {
    let Ok(signature) = hex::decode(signature_hex) else {
        return false;
    };
    let message = canonical(request.method, request.path_and_query, request.timestamp_ms, request.nonce, request.body);
    UnparsedPublicKey::new(&ED25519, public_key).verify(&message, &signature).is_ok()
}

/// The hash under which the relay keeps an invite's one-time token (it never stores the token).
pub fn token_hash(token: &[u8]) -> [u8; 32] {
    let mut input = b"daftar invite token".to_vec();
    input.extend_from_slice(token);
    ring::digest::digest(&ring::digest::SHA256, &input).as_ref().try_into().expect("SHA-256 is 32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use daftar_keys::Secret;

    #[test]
    fn any_change_to_the_request_breaks_the_signature() {
        let key = DeviceSigningKey::from_seed(&Secret::new([9; 32]));
        let device = DeviceId::from_uuid(uuid::Uuid::nil());
        let signed = sign(&key, device, "post", "/v1/workspaces/x/envelopes", 1000, b"{}");
        let public = key.public_key();
        let request = SignedRequest {
            method: "POST",
            path_and_query: "/v1/workspaces/x/envelopes",
            timestamp_ms: 1000,
            nonce: &signed.nonce,
            body: b"{}",
        };
        assert!(verify(&public, request, &signed.signature));
        let changed = [
            SignedRequest { path_and_query: "/v1/workspaces/y/envelopes", ..request },
            SignedRequest { timestamp_ms: 1001, ..request },
            SignedRequest { body: b"[]", ..request },
            SignedRequest { method: "GET", ..request },
            SignedRequest { nonce: "00", ..request },
        ];
        for other in changed {
            assert!(!verify(&public, other, &signed.signature), "{other:?}");
        }
        assert!(!verify(&public, request, "zz"));
        let again = sign(&key, device, "post", "/v1/workspaces/x/envelopes", 1000, b"{}");
        assert_ne!(again.signature, signed.signature, "identical requests are told apart by their nonce");
    }
}

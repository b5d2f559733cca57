//! How a device proves itself to the relay: every request is signed with its Ed25519 key.
//!
//! The signed text is
//! `daftar-relay-v1 \n METHOD \n PATH?QUERY \n TIMESTAMP_MS \n hex(SHA-256(body))`, sent in three
//! headers. The relay checks the device is enrolled in the workspace of the path and not revoked,
//! that the timestamp is within [`MAX_SKEW_MS`] of its clock, that the signature verifies, and
//! that it has not seen the same signature before (so a captured request cannot be replayed).

use daftar_domain::DeviceId;
use ring::signature::{ED25519, UnparsedPublicKey};

use crate::envelope::DeviceSigningKey;

pub const DEVICE_HEADER: &str = "x-daftar-device";
pub const TIMESTAMP_HEADER: &str = "x-daftar-timestamp";
pub const SIGNATURE_HEADER: &str = "x-daftar-signature";
/// How far a request's timestamp may be from the relay's clock.
pub const MAX_SKEW_MS: i64 = 5 * 60 * 1000;

fn canonical(method: &str, path_and_query: &str, timestamp_ms: i64, body: &[u8]) -> Vec<u8> {
    let digest = ring::digest::digest(&ring::digest::SHA256, body);
    let hex = hex::encode(digest.as_ref());
    format!(
        "daftar-relay-v1\n{}\n{path_and_query}\n{timestamp_ms}\n{hex}",
        method.to_ascii_uppercase()
    )
    .into_bytes()
}

/// The three header values for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub device: String,
    pub timestamp: String,
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
    let signature = key.sign(&canonical(method, path_and_query, timestamp_ms, body));
    SignedHeaders {
        device: device.to_string(),
        timestamp: timestamp_ms.to_string(),
        signature: hex::encode(signature),
    }
}

/// Whether `signature_hex` is `public_key`'s signature of this request.
pub fn verify(
    public_key: &[u8; 32],
    method: &str,
    path_and_query: &str,
    timestamp_ms: i64,
    body: &[u8],
    signature_hex: &str,
) -> bool {
    let Ok(signature) = hex::decode(signature_hex) else {
        return false;
    };
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(
            &canonical(method, path_and_query, timestamp_ms, body),
            &signature,
        )
        .is_ok()
}

/// The hash under which the relay keeps an invite's one-time token (it never stores the token).
pub fn token_hash(token: &[u8]) -> [u8; 32] {
    let mut input = b"daftar invite token".to_vec();
    input.extend_from_slice(token);
    ring::digest::digest(&ring::digest::SHA256, &input)
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use daftar_keys::Secret;

    #[test]
    fn any_change_to_the_request_breaks_the_signature() {
        let key = DeviceSigningKey::from_seed(&Secret::new([9; 32]));
        let device = DeviceId::from_uuid(uuid::Uuid::nil());
        let signed = sign(
            &key,
            device,
            "post",
            "/v1/workspaces/x/envelopes",
            1000,
            b"{}",
        );
        let public = key.public_key();
        assert!(verify(
            &public,
            "POST",
            "/v1/workspaces/x/envelopes",
            1000,
            b"{}",
            &signed.signature
        ));
        assert!(!verify(
            &public,
            "POST",
            "/v1/workspaces/y/envelopes",
            1000,
            b"{}",
            &signed.signature
        ));
        assert!(!verify(
            &public,
            "POST",
            "/v1/workspaces/x/envelopes",
            1001,
            b"{}",
            &signed.signature
        ));
        assert!(!verify(
            &public,
            "POST",
            "/v1/workspaces/x/envelopes",
            1000,
            b"[]",
            &signed.signature
        ));
        assert!(!verify(
            &public,
            "GET",
            "/v1/workspaces/x/envelopes",
            1000,
            b"{}",
            &signed.signature
        ));
        assert!(!verify(
            &public,
            "POST",
            "/v1/workspaces/x/envelopes",
            1000,
            b"{}",
            "zz"
        ));
    }
}

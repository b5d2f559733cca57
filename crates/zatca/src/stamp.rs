//! The cryptographic stamp: ECDSA with SHA-256 on secp256k1 over the 32 raw bytes of the
//! invoice hash (ring has no secp256k1, hence k256).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use k256::ecdsa::signature::Verifier;
use k256::ecdsa::{Signature, VerifyingKey};
use k256::pkcs8::DecodePublicKey;

/// A stamp could not be checked, or does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StampError {
    #[error("the invoice hash is not base64 of 32 bytes")]
    BadHash,
    #[error("the public key is not a DER secp256k1 key: {0}")]
    BadKey(String),
    #[error("the signature is not a DER ECDSA signature: {0}")]
    BadSignature(String),
    #[error("the signature does not verify: the invoice or its stamp was altered")]
    Mismatch,
}

/// Checks that `signature_der` is the stamp of `invoice_hash` (base64) by `public_key_der`.
pub fn verify(invoice_hash: &str, signature_der: &[u8], public_key_der: &[u8]) -> Result<(), StampError> {
    let hash = BASE64.decode(invoice_hash).ok().filter(|h| h.len() == 32).ok_or(StampError::BadHash)?;
    let key = VerifyingKey::from_public_key_der(public_key_der).map_err(|e| StampError::BadKey(e.to_string()))?;
    let signature = Signature::from_der(signature_der).map_err(|e| StampError::BadSignature(e.to_string()))?;
    key.verify(&hash, &signature).map_err(|_| StampError::Mismatch)
}

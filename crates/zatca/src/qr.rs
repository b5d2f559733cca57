//! The QR code's payload: TLV fields (one tag byte, one length byte, the value), base64.
//! Tags 1–5 are text (seller name, VAT number, timestamp, total with VAT, VAT total); 6 and 7
//! are the invoice hash and the signature as base64 text; 8 is the public key (DER); 9, for
//! simplified invoices, the signature of the certificate by ZATCA's CA.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

/// A QR payload could not be read or made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QrError {
    #[error("the QR payload is not base64: {0}")]
    NotBase64(String),
    #[error("the QR payload is cut short in the field at byte {0}")]
    Truncated(usize),
    #[error("QR field {tag} is {len} bytes; a field holds at most 255")]
    TooLong { tag: u8, len: usize },
}

/// The fields of a QR payload, in order.
pub fn decode(payload: &str) -> Result<Vec<(u8, Vec<u8>)>, QrError> {
    let bytes = BASE64.decode(payload.trim()).map_err(|e| QrError::NotBase64(e.to_string()))?;
    let mut fields = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let (Some(&tag), Some(&len)) = (bytes.get(at), bytes.get(at + 1)) else {
            return Err(QrError::Truncated(at));
        };
        let value = bytes.get(at + 2..at + 2 + len as usize).ok_or(QrError::Truncated(at))?;
        fields.push((tag, value.to_vec()));
        at += 2 + len as usize;
    }
    Ok(fields)
}

/// The payload of `fields`, in order.
pub fn encode(fields: &[(u8, &[u8])]) -> Result<String, QrError> {
    let mut bytes = Vec::new();
    for (tag, value) in fields {
        let len = u8::try_from(value.len()).map_err(|_| QrError::TooLong { tag: *tag, len: value.len() })?;
        bytes.push(*tag);
        bytes.push(len);
        bytes.extend_from_slice(value);
    }
    Ok(BASE64.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_bad_payloads_are_named() {
        let payload = encode(&[(1, "شركة أكمي".as_bytes()), (2, b"300000000000003")]).unwrap();
        let fields = decode(&payload).unwrap();
        assert_eq!(fields[0], (1, "شركة أكمي".as_bytes().to_vec()));
        assert_eq!(fields[1].0, 2);
        assert_eq!(decode("AQVhYg=="), Err(QrError::Truncated(0)), "a length longer than the rest");
        assert!(matches!(decode("not base64!"), Err(QrError::NotBase64(_))));
        assert_eq!(encode(&[(9, &[0; 256])]), Err(QrError::TooLong { tag: 9, len: 256 }));
    }
}

//! The cryptographic stamp: ECDSA with SHA-256 on secp256k1 over the 32 raw bytes of the
//! invoice hash (ring has no secp256k1, hence k256), and the XAdES block that carries it in
//! the invoice's UBL extensions.
//!
//! Two digests in that block follow ZATCA's SDK rather than XML-DSig to the letter, and the
//! SDK's 19 samples are the oracle for both: the certificate digest is taken over the
//! certificate's base64 text ([`crate::cert::Certificate::digest`]), and the signed-properties
//! digest over the `xades:SignedProperties` element's text as written, with the `xades`
//! namespace declared on it and the `ds` namespace on each `ds:` element
//! ([`signed_properties_digest`]); both are base64 of a hex SHA-256.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use k256::ecdsa::signature::{Signer, Verifier};
use k256::ecdsa::{Signature, SigningKey, VerifyingKey};
use k256::pkcs8::DecodePublicKey;

use crate::cert::Certificate;
use crate::xml;

const DS: &str = "http://www.w3.org/2000/09/xmldsig#";
const XADES: &str = "http://uri.etsi.org/01903/v1.3.2#";

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
    // k256 accepts only low-S signatures (Bitcoin's malleability rule); ECDSA as ZATCA's SDK
    // (Java) makes it does not normalise S, so about half of real stamps are high-S and equally
    // valid. Normalising first checks the same mathematical signature.
    let signature = signature.normalize_s().unwrap_or(signature);
    key.verify(&hash, &signature).map_err(|_| StampError::Mismatch)
}

/// The stamp of `invoice_hash` (base64): a DER ECDSA signature (deterministic, RFC 6979).
pub fn sign(key: &SigningKey, invoice_hash: &str) -> Result<Vec<u8>, StampError> {
    let hash = BASE64.decode(invoice_hash).ok().filter(|h| h.len() == 32).ok_or(StampError::BadHash)?;
    let signature: Signature = key.sign(&hash);
    Ok(signature.to_der().as_bytes().to_vec())
}

/// base64 of the hex SHA-256 of the signed-properties element's text, with the namespace
/// declarations ZATCA's SDK adds before hashing.
pub fn signed_properties_digest(element_text: &str) -> String {
    let declared = declare_namespaces(element_text);
    BASE64.encode(hex::encode(ring::digest::digest(&ring::digest::SHA256, declared.as_bytes())))
}

fn declare_namespaces(element_text: &str) -> String {
    let mut out = String::with_capacity(element_text.len() + 512);
    let mut rest = element_text;
    let mut first = true;
    while let Some(at) = rest.find('<') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let name_end =
            rest[1..].find(|c: char| c.is_whitespace() || c == '>' || c == '/').map_or(rest.len(), |i| i + 1);
        let name = &rest[1..name_end];
        out.push_str(&rest[..name_end]);
        rest = &rest[name_end..];
        if first && name.starts_with("xades:") && !rest.starts_with(" xmlns:xades=") {
            out.push_str(&format!(" xmlns:xades=\"{XADES}\""));
        } else if name.starts_with("ds:") && !rest.starts_with(" xmlns:ds=") {
            out.push_str(&format!(" xmlns:ds=\"{DS}\""));
        }
        first = false;
    }
    out.push_str(rest);
    out
}

/// The `xades:SignedProperties` element as written into an invoice (its indentation is part of
/// what is digested).
pub fn signed_properties(signing_time: &str, certificate: &Certificate) -> String {
    format!(
        r#"<xades:SignedProperties Id="xadesSignedProperties">
                                    <xades:SignedSignatureProperties>
                                        <xades:SigningTime>{time}</xades:SigningTime>
                                        <xades:SigningCertificate>
                                            <xades:Cert>
                                                <xades:CertDigest>
                                                    <ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
                                                    <ds:DigestValue>{digest}</ds:DigestValue>
                                                </xades:CertDigest>
                                                <xades:IssuerSerial>
                                                    <ds:X509IssuerName>{issuer}</ds:X509IssuerName>
                                                    <ds:X509SerialNumber>{serial}</ds:X509SerialNumber>
                                                </xades:IssuerSerial>
                                            </xades:Cert>
                                        </xades:SigningCertificate>
                                    </xades:SignedSignatureProperties>
                                </xades:SignedProperties>"#,
        time = xml::text(signing_time),
        digest = certificate.digest(),
        issuer = xml::text(&certificate.issuer()),
        serial = certificate.serial_decimal(),
    )
}

/// The whole `ext:UBLExtensions` element carrying the stamp.
pub fn extensions(invoice_hash: &str, signature: &[u8], certificate: &Certificate, signing_time: &str) -> String {
    let properties = signed_properties(signing_time, certificate);
    let properties_digest = signed_properties_digest(&properties);
    format!(
        r##"<ext:UBLExtensions>
    <ext:UBLExtension>
        <ext:ExtensionURI>urn:oasis:names:specification:ubl:dsig:enveloped:xades</ext:ExtensionURI>
        <ext:ExtensionContent>
            <sig:UBLDocumentSignatures xmlns:sig="urn:oasis:names:specification:ubl:schema:xsd:CommonSignatureComponents-2" xmlns:sac="urn:oasis:names:specification:ubl:schema:xsd:SignatureAggregateComponents-2" xmlns:sbc="urn:oasis:names:specification:ubl:schema:xsd:SignatureBasicComponents-2">
                <sac:SignatureInformation>
                    <cbc:ID>urn:oasis:names:specification:ubl:signature:1</cbc:ID>
                    <sbc:ReferencedSignatureID>urn:oasis:names:specification:ubl:signature:Invoice</sbc:ReferencedSignatureID>
                    <ds:Signature xmlns:ds="{DS}" Id="signature">
                        <ds:SignedInfo>
                            <ds:CanonicalizationMethod Algorithm="http://www.w3.org/2006/12/xml-c14n11"/>
                            <ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"/>
                            <ds:Reference Id="invoiceSignedData" URI="">
                                <ds:Transforms>
                                    <ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116">
                                        <ds:XPath>not(//ancestor-or-self::ext:UBLExtensions)</ds:XPath>
                                    </ds:Transform>
                                    <ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116">
                                        <ds:XPath>not(//ancestor-or-self::cac:Signature)</ds:XPath>
                                    </ds:Transform>
                                    <ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116">
                                        <ds:XPath>not(//ancestor-or-self::cac:AdditionalDocumentReference[cbc:ID='QR'])</ds:XPath>
                                    </ds:Transform>
                                    <ds:Transform Algorithm="http://www.w3.org/2006/12/xml-c14n11"/>
                                </ds:Transforms>
                                <ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
                                <ds:DigestValue>{invoice_hash}</ds:DigestValue>
                            </ds:Reference>
                            <ds:Reference Type="http://www.w3.org/2000/09/xmldsig#SignatureProperties" URI="#xadesSignedProperties">
                                <ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
                                <ds:DigestValue>{properties_digest}</ds:DigestValue>
                            </ds:Reference>
                        </ds:SignedInfo>
                        <ds:SignatureValue>{signature}</ds:SignatureValue>
                        <ds:KeyInfo>
                            <ds:X509Data>
                                <ds:X509Certificate>{certificate}</ds:X509Certificate>
                            </ds:X509Data>
                        </ds:KeyInfo>
                        <ds:Object>
                            <xades:QualifyingProperties xmlns:xades="{XADES}" Target="signature">
                                {properties}
                            </xades:QualifyingProperties>
                        </ds:Object>
                    </ds:Signature>
                </sac:SignatureInformation>
            </sig:UBLDocumentSignatures>
        </ext:ExtensionContent>
    </ext:UBLExtension>
</ext:UBLExtensions>"##,
        signature = BASE64.encode(signature),
        certificate = certificate.base64(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_verifies_and_another_hash_does_not() {
        let key = SigningKey::from_slice(&[3u8; 32]).unwrap();
        let hash = BASE64.encode([1u8; 32]);
        let signature = sign(&key, &hash).unwrap();
        let public = k256::pkcs8::EncodePublicKey::to_public_key_der(key.verifying_key()).unwrap();
        assert_eq!(verify(&hash, &signature, public.as_bytes()), Ok(()));
        assert_eq!(verify(&BASE64.encode([2u8; 32]), &signature, public.as_bytes()), Err(StampError::Mismatch));
        assert_eq!(sign(&key, "short"), Err(StampError::BadHash));
    }

    #[test]
    fn namespaces_are_declared_as_the_sdk_does() {
        let text = "<xades:SignedProperties Id=\"x\">\n <ds:DigestMethod Algorithm=\"a\"/><ds:DigestValue>v</ds:DigestValue></xades:SignedProperties>";
        assert_eq!(
            declare_namespaces(text),
            format!(
                "<xades:SignedProperties xmlns:xades=\"{XADES}\" Id=\"x\">\n <ds:DigestMethod xmlns:ds=\"{DS}\" Algorithm=\"a\"/><ds:DigestValue xmlns:ds=\"{DS}\">v</ds:DigestValue></xades:SignedProperties>"
            )
        );
    }
}

use std::fmt;

use zeroize::Zeroize;

/// A fixed-size secret. It cannot be cloned, printed or serialised by accident, and its bytes
/// are overwritten when it is dropped.
pub struct Secret<const N: usize>([u8; N]);

/// The 256-bit key that encrypts a data directory's database.
pub type DatabaseKey = Secret<32>;

impl<const N: usize> Secret<N> {
    pub fn new(bytes: [u8; N]) -> Self {
        Self(bytes)
    }

    /// The raw key bytes. Named to make every use stand out in review.
    pub fn expose_secret_bytes(&self) -> &[u8; N] {
        &self.0
    }
}

impl<const N: usize> fmt::Debug for Secret<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret<{N}>([redacted])")
    }
}

impl<const N: usize> Drop for Secret<N> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_bytes() {
        let secret = Secret::new([0xAB; 32]);
        assert_eq!(format!("{secret:?}"), "Secret<32>([redacted])");
    }
}

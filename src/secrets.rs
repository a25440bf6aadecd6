//! The secrets idgate makes (API tokens, source write keys, session ids, SAML request cookies) and
//! the hash it stores in their place. Each carries 256 random bits, so a fast hash is as safe to
//! store as a slow password hash would be.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const SECRET_BYTES: usize = 32;

/// 256 random bits as base64url: the secret part of tokens and source write keys.
pub fn random_secret() -> String {
    let mut random = [0u8; SECRET_BYTES];
    openssl::rand::rand_bytes(&mut random).expect("the system random generator is available");
    URL_SAFE_NO_PAD.encode(random)
}

/// The SHA-256 of a presented secret, as stored.
pub fn hash(presented: &str) -> [u8; 32] {
    // The streaming hasher, not `openssl::sha::sha256`: OpenSSL 3 answers the one-shot call by
    // looking the algorithm up again each time, which cost more than hashing a token.
    let mut hasher = openssl::sha::Sha256::new();
    hasher.update(presented.as_bytes());
    hasher.finish()
}

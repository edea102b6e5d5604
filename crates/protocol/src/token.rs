//! Event tokens and run ids derived with HMAC-SHA256, so the API and the writer verify them
//! without shared state.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    match HmacSha256::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
    }
}

/// The event token for `event_id`: lowercase hex of `HMAC-SHA256(secret, uuid)`, where the uuid
/// is its hyphenated lowercase text (64 hex characters).
pub fn event_token(secret: &[u8], event_id: &Uuid) -> String {
    let mut m = mac(secret);
    m.update(event_id.hyphenated().to_string().as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// Whether `token` is the event token of `event_id`, compared in constant time.
pub fn verify_event_token(secret: &[u8], event_id: &Uuid, token: &str) -> bool {
    let Ok(bytes) = hex::decode(token.trim()) else {
        return false;
    };
    let mut m = mac(secret);
    m.update(event_id.hyphenated().to_string().as_bytes());
    m.verify_slice(&bytes).is_ok()
}

/// The run id for an idempotent register: the same `run_key` under the same API key (its
/// `key_id`, never the key itself) always gives the same uuid, so cluster nodes that register
/// with one run key join one run. A version-8 (custom) UUID made of the first 16 bytes of
/// `HMAC-SHA256(secret, "run-key\0" + key_id + "\0" + run_key)`.
pub fn run_id_for_key(secret: &[u8], key_id: &str, run_key: &str) -> Uuid {
    let mut m = mac(secret);
    m.update(b"run-key\0");
    m.update(key_id.as_bytes());
    m.update(b"\0");
    m.update(run_key.as_bytes());
    let digest = m.finalize().into_bytes();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip_and_scope() {
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        let t = event_token(b"s3cret", &a);
        assert_eq!(t.len(), 64);
        assert!(verify_event_token(b"s3cret", &a, &t));
        assert!(
            !verify_event_token(b"s3cret", &b, &t),
            "token of A must not open B"
        );
        assert!(!verify_event_token(b"other", &a, &t));
        assert!(!verify_event_token(b"s3cret", &a, "zz"));
    }

    #[test]
    fn run_key_is_stable_per_api_key() {
        let x = run_id_for_key(b"s", "team-a", "nightly-42");
        assert_eq!(x, run_id_for_key(b"s", "team-a", "nightly-42"));
        assert_ne!(x, run_id_for_key(b"s", "team-b", "nightly-42"));
        assert_ne!(x, run_id_for_key(b"s", "team-a", "nightly-43"));
    }
}

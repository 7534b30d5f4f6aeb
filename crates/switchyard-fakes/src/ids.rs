//! Cheap pseudo-random identifiers shaped like the ones real providers send.
//!
//! Not cryptographic: a process-wide counter run through SplitMix64, seeded from the standard
//! library's randomly keyed hasher so ids differ between runs.

use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8] = b"0123456789abcdef";
/// Crockford base32, lower case, as in ULIDs (Groq's `req_...` ids).
const ULID: &[u8] = b"0123456789abcdefghjkmnpqrstvwxyz";

fn next_u64() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| RandomState::new().hash_one(std::process::id()));
    let mut z = seed.wrapping_add(
        COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Appends `n` random characters from `alphabet` (at most 62 symbols) to `out`.
fn push_random(out: &mut String, alphabet: &[u8], n: usize) {
    let base = alphabet.len() as u64;
    let mut bits = 0;
    for i in 0..n {
        // 62^10 < 2^64, so one draw yields ten symbols for any alphabet used here.
        if i % 10 == 0 {
            bits = next_u64();
        }
        out.push(alphabet[(bits % base) as usize] as char);
        bits /= base;
    }
}

/// An OpenAI-style completion id: `chatcmpl-` and 29 alphanumerics.
pub(crate) fn openai_completion_id() -> String {
    let mut id = String::with_capacity(38);
    id.push_str("chatcmpl-");
    push_random(&mut id, ALNUM, 29);
    id
}

/// An OpenAI tool call id: `call_` and 24 alphanumerics.
pub(crate) fn openai_tool_call_id() -> String {
    let mut id = String::with_capacity(29);
    id.push_str("call_");
    push_random(&mut id, ALNUM, 24);
    id
}

/// A Groq-style completion id: `chatcmpl-` and a version-4 UUID.
pub(crate) fn groq_completion_id() -> String {
    let mut id = String::with_capacity(45);
    id.push_str("chatcmpl-");
    for (i, len) in [8, 4, 4, 4, 12].into_iter().enumerate() {
        if i > 0 {
            id.push('-');
        }
        match i {
            // The version nibble, then the variant nibble.
            2 => id.push('4'),
            3 => push_random(&mut id, b"89ab", 1),
            _ => push_random(&mut id, HEX, 1),
        }
        push_random(&mut id, HEX, len - 1);
    }
    id
}

/// A Groq request id (`x_groq.id`): `req_` and 26 ULID characters.
pub(crate) fn groq_request_id() -> String {
    let mut id = String::with_capacity(30);
    id.push_str("req_");
    push_random(&mut id, ULID, 26);
    id
}

/// The value of the `x-request-id` response header: `req_` and 32 hex digits.
pub(crate) fn request_id() -> String {
    let mut id = String::with_capacity(36);
    id.push_str("req_");
    push_random(&mut id, HEX, 32);
    id
}

/// A `system_fingerprint`: `fp_` and 10 hex digits.
pub(crate) fn fingerprint() -> String {
    let mut id = String::with_capacity(13);
    id.push_str("fp_");
    push_random(&mut id, HEX, 10);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let id = openai_completion_id();
        assert_eq!(id.len(), 38);
        assert!(id[9..].bytes().all(|b| b.is_ascii_alphanumeric()));
        let uuid = groq_completion_id();
        assert_eq!(uuid.len(), 45);
        assert_eq!(&uuid[23..24], "4");
        assert!("89ab".contains(&uuid[28..29]));
        assert_eq!(groq_request_id().len(), 30);
        assert_eq!(request_id().len(), 36);
        assert_eq!(fingerprint().len(), 13);
        assert_eq!(openai_tool_call_id().len(), 29);
        assert_ne!(openai_completion_id(), openai_completion_id());
    }
}

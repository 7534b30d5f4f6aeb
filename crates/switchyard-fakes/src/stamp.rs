//! Send-time stamps in stream chunks, for measuring what a gateway adds to each chunk.
//!
//! With [`stamp_chunks`] on, the upstream's `system_fingerprint` is a placeholder,
//! `fp_t` and 19 zeros, and each body frame that carries it has the zeros replaced, as it leaves
//! the body, by the wall-clock time in nanoseconds since the Unix epoch. A gateway relays
//! `system_fingerprint` untouched (it is part of OpenAI's chunk), so a client on the same machine
//! reads, per chunk, how long it took from the upstream's send to its own read: directly, and
//! through each gateway. The field stays a valid fingerprint string, the chunk its usual size.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// The fingerprint while stamping: replaced in each frame by the send time.
pub(crate) const PLACEHOLDER: &str = "fp_t0000000000000000000";

/// Stamps every stream chunk with its send time from now on, in this process (call before
/// starting the upstream). Meant for the benchmark upstream.
pub fn stamp_chunks() {
    ENABLED.store(true, Ordering::Relaxed);
}

pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// `data` with each placeholder replaced by the current time (nanoseconds, 19 digits).
pub(crate) fn apply(data: Bytes) -> Bytes {
    let marker = PLACEHOLDER.as_bytes();
    if !data.windows(marker.len()).any(|w| w == marker) {
        return data;
    }
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let digits = format!("{nanos:019}");
    let mut out = data.to_vec();
    let mut from = 0;
    while let Some(at) = out[from..].windows(marker.len()).position(|w| w == marker) {
        let start = from + at + 4; // after `fp_t`
        out[start..start + 19].copy_from_slice(&digits.as_bytes()[digits.len() - 19..]);
        from = start + 19;
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_the_send_time() {
        let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let out = apply(Bytes::from(format!(r#"data: {{"system_fingerprint":"{PLACEHOLDER}","choices":[]}}"#)));
        let text = std::str::from_utf8(&out).unwrap();
        let stamp: u128 = text.split("fp_t").nth(1).unwrap()[..19].parse().unwrap();
        assert!(stamp >= before && stamp < before + 10_000_000_000, "{text}");
        assert_eq!(text.len(), format!(r#"data: {{"system_fingerprint":"{PLACEHOLDER}","choices":[]}}"#).len());
        assert_eq!(apply(Bytes::from_static(b"data: [DONE]")), Bytes::from_static(b"data: [DONE]"));
    }
}

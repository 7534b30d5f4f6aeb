//! Token counting with OpenAI's BPE files (tiktoken-rs embeds them: nothing is downloaded).
//! The encodings load on first use (tens of MiB), so a gateway that never counts never pays.
//! Counts for non-OpenAI models use `cl100k_base`: an estimate, within a few percent for
//! English text, which is what cost estimates and context-window checks need.

use tiktoken_rs::CoreBPE;

/// The encoding OpenAI uses for `model` (o200k for the GPT-4o, 4.1, 5 and o-series families).
fn encoding(model: &str) -> &'static CoreBPE {
    let m = model.rsplit('/').next().unwrap_or(model).to_ascii_lowercase();
    let o200k = m.starts_with("gpt-4o")
        || m.starts_with("gpt-4.1")
        || m.starts_with("gpt-5")
        || m.starts_with("chatgpt-4o")
        || (m.starts_with('o') && m.as_bytes().get(1).is_some_and(u8::is_ascii_digit));
    if o200k { tiktoken_rs::o200k_base_singleton() } else { tiktoken_rs::cl100k_base_singleton() }
}

/// Tokens of `text` for `model`.
pub fn count(model: &str, text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    encoding(model).encode_ordinary(text).len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_like_openai() {
        // Reference counts from OpenAI's tokenizer for these encodings.
        assert_eq!(count("gpt-4o", "hello world"), 2);
        assert_eq!(count("gpt-3.5-turbo", "hello world"), 2);
        assert_eq!(count("gpt-4o", ""), 0);
        let long = "The quick brown fox jumps over the lazy dog. ".repeat(100);
        let n = count("gpt-4o-mini", &long);
        assert!((900..=1100).contains(&n), "{n}");
        assert!(count("claude-sonnet-4", &long) > 900);
    }
}

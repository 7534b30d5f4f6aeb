//! The bundled model table (`models.toml`, compiled into the binary): list prices, context
//! windows and capabilities of well-known models, used by the `cost` strategy, the per-request
//! budget and the capability filters when a target does not set its own.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::config::{Capabilities, Price};

const TABLE: &str = include_str!("models.toml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    input: f64,
    output: f64,
    context_window: u64,
    tools: Option<bool>,
    vision: Option<bool>,
    json_mode: Option<bool>,
}

/// What the table knows about one model.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelInfo {
    pub price: Option<Price>,
    pub caps: Capabilities,
}

fn table() -> &'static BTreeMap<String, ModelInfo> {
    static TABLE_PARSED: OnceLock<BTreeMap<String, ModelInfo>> = OnceLock::new();
    TABLE_PARSED.get_or_init(|| {
        let raw: BTreeMap<String, Entry> = toml::from_str(TABLE).expect("the bundled models.toml is valid");
        raw.into_iter()
            .map(|(k, e)| (k.to_ascii_lowercase(), ModelInfo { price: Some(Price { input: e.input, output: e.output }), caps: Capabilities {
                context_window: Some(e.context_window),
                tools: e.tools,
                vision: e.vision,
                json_mode: e.json_mode,
            } }))
            .collect()
    })
}

/// Looks `model` up: the exact name, then without a provider prefix (`openai/gpt-4o`,
/// `anthropic.claude-…`), each time also as a dated or tagged variant of a known name.
pub fn lookup(model: &str) -> Option<&'static ModelInfo> {
    let lower = model.to_ascii_lowercase();
    let table = table();
    let mut names = vec![lower.as_str()];
    if let Some((_, rest)) = lower.rsplit_once('/') {
        names.push(rest);
    }
    let last = *names.last().unwrap_or(&"");
    if let Some((_, rest)) = last.split_once('.').filter(|(vendor, _)| !vendor.contains('-') && !vendor.chars().any(|c| c.is_ascii_digit())) {
        names.push(rest);
    }
    for name in names {
        if let Some(info) = table.get(name) {
            return Some(info);
        }
        // The longest entry that `name` extends with a separator.
        let found = table
            .range(..=name.to_owned())
            .rev()
            .take_while(|(k, _)| name.as_bytes().first() == k.as_bytes().first())
            .find(|(k, _)| name.starts_with(k.as_str()) && matches!(name.as_bytes().get(k.len()), Some(b'-' | b':' | b'@')));
        if let Some((_, info)) = found {
            return Some(info);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_table_parses() {
        assert!(table().len() > 20);
        assert!(table().values().all(|i| i.price.is_some() && i.caps.context_window.is_some()));
    }

    #[test]
    fn exact_dated_and_prefixed_names() {
        let p = |m: &str| lookup(m).and_then(|i| i.price).map(|p| (p.input, p.output));
        assert_eq!(p("gpt-4o"), Some((2.5, 10.0)));
        assert_eq!(p("gpt-4o-mini"), Some((0.15, 0.6)));
        assert_eq!(p("gpt-4o-2024-08-06"), Some((2.5, 10.0)));
        assert_eq!(p("gpt-4o-mini-2024-07-18"), Some((0.15, 0.6)));
        assert_eq!(p("openai/gpt-4o"), Some((2.5, 10.0)));
        assert_eq!(p("anthropic.claude-3-5-sonnet-20240620-v1:0"), Some((3.0, 15.0)));
        assert_eq!(p("claude-sonnet-4-20250514"), Some((3.0, 15.0)));
        assert_eq!(p("meta-llama/Llama-3.3-70B-Instruct-Turbo"), Some((0.88, 0.88)));
        assert_eq!(p("GPT-4O"), Some((2.5, 10.0)));
        assert_eq!(p("gpt-4"), None);
        assert_eq!(p("gpt-4oo"), None);
        assert_eq!(p("llama3.2"), None);
    }

    #[test]
    fn capabilities_come_along() {
        let c = &lookup("o3-mini").unwrap().caps;
        assert_eq!(c.vision, Some(false));
        assert_eq!(c.context_window, Some(200000));
        assert_eq!(lookup("deepseek-reasoner").unwrap().caps.tools, Some(false));
    }
}

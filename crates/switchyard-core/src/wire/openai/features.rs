//! What a chat request needs from a target, read from its body only when routing asks
//! (capability filters, the `cost` strategy, budgets, rules on `user` / `metadata`): the plain
//! passthrough path never parses this much.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

/// Tokens counted per message for the chat framing (OpenAI's documented overhead is 3–4).
const PER_MESSAGE: u64 = 4;
/// Tokens counted per image: a 1024×1024 image at high detail (OpenAI's tiling rule).
const PER_IMAGE: u64 = 765;

/// The parts of a chat request that decide which targets can serve it and what it costs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestFeatures {
    /// Prompt text (message contents, tool calls and tool definitions), for counting tokens.
    pub text: String,
    pub messages: u64,
    pub images: u64,
    /// The request defines tools (or legacy functions).
    pub tools: bool,
    /// `response_format` asks for JSON (`json_object` or `json_schema`).
    pub json_mode: bool,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u64>,
    pub user: Option<String>,
    /// `metadata` entries whose values are strings.
    pub metadata: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Req<'a> {
    #[serde(default, borrow)]
    messages: Vec<Msg<'a>>,
    #[serde(default, borrow)]
    tools: Option<&'a RawValue>,
    #[serde(default, borrow)]
    functions: Option<&'a RawValue>,
    #[serde(default)]
    response_format: Option<Format>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Deserialize)]
struct Msg<'a> {
    #[serde(default)]
    content: Option<Content>,
    #[serde(default, borrow)]
    tool_calls: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
    Other(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct Part {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct Format {
    #[serde(rename = "type", default)]
    kind: String,
}

impl RequestFeatures {
    /// Reads them from an OpenAI chat request body (already checked to be a JSON object).
    pub fn parse(body: &[u8]) -> RequestFeatures {
        let Ok(req) = crate::wire::json::from_slice::<Req<'_>>(body) else { return RequestFeatures::default() };
        let mut f = RequestFeatures {
            messages: req.messages.len() as u64,
            tools: [req.tools, req.functions].iter().flatten().any(|t| !matches!(t.get().trim(), "null" | "[]")),
            json_mode: req.response_format.is_some_and(|f| f.kind == "json_object" || f.kind == "json_schema"),
            max_tokens: req.max_completion_tokens.or(req.max_tokens),
            user: req.user,
            metadata: req
                .metadata
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(k, v)| match v {
                    serde_json::Value::String(s) => Some((k, s)),
                    _ => None,
                })
                .collect(),
            ..RequestFeatures::default()
        };
        for m in req.messages {
            match m.content {
                Some(Content::Text(t)) => push(&mut f.text, &t),
                Some(Content::Parts(parts)) => {
                    for p in parts {
                        match p.kind.as_str() {
                            "image_url" | "image" | "input_image" => f.images += 1,
                            _ => {
                                if let Some(t) = p.text {
                                    push(&mut f.text, &t);
                                }
                            }
                        }
                    }
                }
                Some(Content::Other(_)) | None => {}
            }
            if let Some(calls) = m.tool_calls {
                push(&mut f.text, calls.get());
            }
        }
        for defs in [req.tools, req.functions].into_iter().flatten().filter(|t| !matches!(t.get().trim(), "null" | "[]")) {
            push(&mut f.text, defs.get());
        }
        f
    }

    /// The prompt's tokens for `model`: counted text, plus per-message framing and images.
    pub fn prompt_tokens(&self, model: &str) -> u64 {
        crate::tokens::count(model, &self.text) + self.messages * PER_MESSAGE + 3 + self.images * PER_IMAGE
    }
}

fn push(out: &mut String, text: &str) {
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_routing_needs() {
        let body = br#"{"model":"m","messages":[
            {"role":"system","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"what is this"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]}
        ],"tools":[{"type":"function","function":{"name":"f"}}],"response_format":{"type":"json_object"},
        "max_tokens":50,"max_completion_tokens":70,"user":"u-1","metadata":{"tier":"free","n":3}}"#;
        let f = RequestFeatures::parse(body);
        assert_eq!(f.messages, 3);
        assert_eq!(f.images, 1);
        assert!(f.tools && f.json_mode);
        assert_eq!(f.max_tokens, Some(70));
        assert_eq!(f.user.as_deref(), Some("u-1"));
        assert_eq!(f.metadata.get("tier").map(String::as_str), Some("free"));
        assert!(!f.metadata.contains_key("n"));
        assert!(f.text.starts_with("be brief\nwhat is this\n[{\"id\""));
        assert!(f.prompt_tokens("gpt-4o") > PER_IMAGE + 3 * PER_MESSAGE);
    }

    #[test]
    fn plain_requests_need_nothing() {
        let f = RequestFeatures::parse(br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[]}"#);
        assert!(!f.tools && !f.json_mode && f.images == 0);
        assert_eq!(f.max_tokens, None);
        assert_eq!(f.prompt_tokens("gpt-4o"), 1 + PER_MESSAGE + 3);
    }
}

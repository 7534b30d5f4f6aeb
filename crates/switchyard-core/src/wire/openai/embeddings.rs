//! The OpenAI embeddings wire format (`POST /v1/embeddings`): reading just enough of a request to
//! route it (`model` and the structure of `input`), rewriting its `model` without touching the
//! rest, typed request fields for adapters that translate it, and the `{"object": "list", ...}`
//! answer, built or normalized.

use std::ops::Range;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{RequestError, Usage};
use crate::wire::json::{as_str, elements, entries, write_key, write_str};
use crate::wire::scan;

/// The shape of a request's `input`, as OpenAI accepts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputShape {
    /// One string.
    Text,
    /// An array of `n` strings.
    Texts(usize),
    /// One array of token ids.
    Tokens,
    /// An array of `n` arrays of token ids.
    TokenBatches(usize),
}

impl InputShape {
    /// How many embeddings the answer holds.
    pub fn count(self) -> usize {
        match self {
            InputShape::Text | InputShape::Tokens => 1,
            InputShape::Texts(n) | InputShape::TokenBatches(n) => n,
        }
    }
}

/// An incoming embeddings request: the raw body plus what routing needs.
#[derive(Clone, Debug)]
pub struct EmbedRequest {
    pub body: Bytes,
    /// The alias the caller asked for.
    pub model: String,
    /// Byte range of the `model` value (including its quotes) within `body`.
    model_span: Range<usize>,
    pub input: InputShape,
}

fn invalid(message: impl Into<String>, param: Option<&'static str>, code: Option<&'static str>) -> RequestError {
    RequestError { message: message.into(), param, code }
}

impl EmbedRequest {
    /// Reads `model` and the structure of `input`, checking that the body is one well-formed
    /// JSON object; every other field is left as raw bytes.
    pub fn parse(body: Bytes) -> Result<EmbedRequest, RequestError> {
        let text = std::str::from_utf8(&body).map_err(|_| invalid("the request body is not valid UTF-8", None, None))?;
        let members = entries(text).map_err(|e| {
            invalid(format!("We could not parse the JSON body of your request. ({e})"), None, Some("invalid_json"))
        })?;
        let field = |name: &str| members.iter().rev().find(|(k, _)| k == name).map(|(_, v)| *v).filter(|v| v.get() != "null");
        let raw_model = field("model")
            .ok_or_else(|| invalid("you must provide a model parameter", Some("model"), Some("missing_required_parameter")))?;
        let model = as_str(raw_model).ok_or_else(|| invalid("'model' must be a string", Some("model"), Some("invalid_type")))?.into_owned();
        let raw_input = field("input")
            .ok_or_else(|| invalid("Missing required parameter: 'input'.", Some("input"), Some("missing_required_parameter")))?;
        let input = input_shape(raw_input)?;
        let start = raw_model.get().as_ptr() as usize - text.as_ptr() as usize;
        let model_span = start..start + raw_model.get().len();
        Ok(EmbedRequest { body, model, model_span, input })
    }

    /// The body with `model` replaced by `upstream_model`; every other byte is unchanged.
    pub fn body_with_model(&self, upstream_model: &str) -> Bytes {
        let body = &self.body[..];
        let mut out = Vec::with_capacity(body.len() + upstream_model.len() + 2);
        out.extend_from_slice(&body[..self.model_span.start]);
        write_str(&mut out, upstream_model);
        out.extend_from_slice(&body[self.model_span.end..]);
        Bytes::from(out)
    }

    /// The typed fields, for adapters that translate the request.
    pub fn fields(&self) -> Result<EmbeddingFields, RequestError> {
        let f: EmbeddingFields = crate::wire::json::from_slice(&self.body)
            .map_err(|e| invalid(format!("Invalid embeddings request: {e}"), None, Some("invalid_value")))?;
        if let Some(fmt) = f.encoding_format.as_deref() {
            if fmt != "float" && fmt != "base64" {
                return Err(invalid(
                    format!("'{fmt}' is not one of ['float', 'base64'] - 'encoding_format'"),
                    Some("encoding_format"),
                    Some("invalid_value"),
                ));
            }
        }
        if f.dimensions == Some(0) {
            return Err(invalid("'dimensions' must be at least 1", Some("dimensions"), Some("invalid_value")));
        }
        Ok(f)
    }
}

/// Checks `input` is a non-empty string, array of strings, array of token ids, or array of
/// token-id arrays.
fn input_shape(raw: &RawValue) -> Result<InputShape, RequestError> {
    let bad = || invalid("'input' must be a string, an array of strings, an array of token ids or an array of token-id arrays", Some("input"), Some("invalid_type"));
    let s = raw.get();
    if s.starts_with('"') {
        return Ok(InputShape::Text);
    }
    if !s.starts_with('[') {
        return Err(bad());
    }
    let items = elements(s).map_err(|_| bad())?;
    if items.is_empty() {
        return Err(invalid("'input' must not be empty", Some("input"), Some("invalid_value")));
    }
    let is_number = |v: &RawValue| v.get().bytes().all(|b| b.is_ascii_digit());
    if items.iter().all(|v| v.get().starts_with('"')) {
        Ok(InputShape::Texts(items.len()))
    } else if items.iter().all(|v| is_number(v)) {
        Ok(InputShape::Tokens)
    } else if items.iter().all(|v| {
        v.get().starts_with('[') && elements(v.get()).is_ok_and(|inner| !inner.is_empty() && inner.iter().all(|t| is_number(t)))
    }) {
        Ok(InputShape::TokenBatches(items.len()))
    } else {
        Err(bad())
    }
}

/// `input` decoded.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum EmbedInput {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u64>),
    TokenBatches(Vec<Vec<u64>>),
}

impl EmbedInput {
    /// The texts, when the input is text (token ids cannot be sent to a text-only API).
    pub fn texts(&self) -> Option<Vec<&str>> {
        match self {
            EmbedInput::Text(t) => Some(vec![t.as_str()]),
            EmbedInput::Texts(ts) => Some(ts.iter().map(String::as_str).collect()),
            EmbedInput::Tokens(_) | EmbedInput::TokenBatches(_) => None,
        }
    }

    /// The input items as bytes to hash: texts, or token ids as decimal text.
    pub fn items(&self) -> Vec<String> {
        let join = |ts: &[u64]| ts.iter().map(u64::to_string).collect::<Vec<_>>().join(" ");
        match self {
            EmbedInput::Text(t) => vec![t.clone()],
            EmbedInput::Texts(ts) => ts.clone(),
            EmbedInput::Tokens(ts) => vec![join(ts)],
            EmbedInput::TokenBatches(bs) => bs.iter().map(|b| join(b)).collect(),
        }
    }

    /// Total bytes of text (token arrays: four bytes a token), for usage estimates.
    /// The input's tokens, for usage when the upstream reports none: token-id inputs are
    /// their length, text is counted with `cl100k_base` (see [`crate::tokens`]).
    pub fn count_tokens(&self) -> u64 {
        match self {
            EmbedInput::Text(t) => crate::tokens::count("", t),
            EmbedInput::Texts(ts) => ts.iter().map(|t| crate::tokens::count("", t)).sum(),
            EmbedInput::Tokens(ts) => ts.len() as u64,
            EmbedInput::TokenBatches(bs) => bs.iter().map(|b| b.len() as u64).sum(),
        }
    }

    pub fn bytes(&self) -> usize {
        match self {
            EmbedInput::Text(t) => t.len(),
            EmbedInput::Texts(ts) => ts.iter().map(String::len).sum(),
            EmbedInput::Tokens(ts) => ts.len() * 4,
            EmbedInput::TokenBatches(bs) => bs.iter().map(|b| b.len() * 4).sum(),
        }
    }
}

/// The request fields a translating adapter uses.
#[derive(Clone, Debug, Deserialize)]
pub struct EmbeddingFields {
    pub input: EmbedInput,
    /// `float` (default) or `base64`.
    #[serde(default)]
    pub encoding_format: Option<String>,
    #[serde(default)]
    pub dimensions: Option<u32>,
    #[serde(default)]
    pub user: Option<String>,
    /// Not OpenAI's: Ollama's `truncate`, passed on to Ollama when a caller sends it.
    #[serde(default)]
    pub truncate: Option<bool>,
}

impl EmbeddingFields {
    pub fn base64(&self) -> bool {
        self.encoding_format.as_deref() == Some("base64")
    }
}

/// Rough token count for `bytes` of text, where the upstream reports none.
/// Rough token count for `bytes` of text or JSON, where nothing better is at hand.
pub fn estimate_tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4).max(1)
}

/// The little-endian f32 bytes of `values` in standard base64 (with padding), as OpenAI encodes
/// `encoding_format: "base64"` embeddings.
pub fn base64_f32(values: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16) | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8) | u32::from(*chunk.get(2).unwrap_or(&0));
        let sextets = [(n >> 18) & 63, (n >> 12) & 63, (n >> 6) & 63, n & 63];
        for (i, s) in sextets.iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[*s as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An OpenAI `{"object": "list", "data": [...], "model": alias, "usage": {...}}` body for
/// `vectors` (as float arrays, or base64 strings when `base64`).
pub fn list_body(alias: &str, vectors: &[Vec<f32>], base64: bool, usage: Usage) -> Bytes {
    let floats: usize = vectors.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(96 + alias.len() + vectors.len() * 48 + floats * if base64 { 6 } else { 12 });
    out.extend_from_slice(b"{\"object\":\"list\",\"data\":[");
    for (i, v) in vectors.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"object\":\"embedding\",\"index\":");
        out.extend_from_slice(i.to_string().as_bytes());
        out.extend_from_slice(b",\"embedding\":");
        if base64 {
            write_str(&mut out, &base64_f32(v));
        } else {
            serde_json::to_writer(&mut out, v).expect("writing floats to a Vec cannot fail");
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"],");
    write_key(&mut out, "model");
    write_str(&mut out, alias);
    out.extend_from_slice(format!(",\"usage\":{{\"prompt_tokens\":{},\"total_tokens\":{}}}}}", usage.prompt_tokens, usage.total_tokens).as_bytes());
    Bytes::from(out)
}

/// Why an upstream embeddings answer could not be normalized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmbedNormalizeError {
    Invalid(String),
    /// An `{"error": ...}` body.
    Upstream(String),
}

/// Normalizes an OpenAI-compatible embeddings answer: `model` becomes the alias, `object`,
/// `data` (kept byte for byte, so base64 embeddings pass as sent) and `usage` are kept, other
/// top-level fields dropped. An answer without `usage` gets one estimated from `request_bytes`.
pub fn normalize_list(input: &[u8], alias: &str, request_bytes: usize) -> Result<(Bytes, Usage), EmbedNormalizeError> {
    let mut out = Vec::with_capacity(input.len() + alias.len() + 64);
    let mut usage: Option<Usage> = None;
    let mut data = false;
    let mut error = None;
    out.extend_from_slice(b"{\"object\":\"list\"");
    scan::members(input, 0..input.len(), &mut |m| {
        if m.key_escaped {
            return Ok(());
        }
        let raw = &input[m.value.clone()];
        match m.key {
            b"data" => {
                data = true;
                out.extend_from_slice(b",\"data\":");
                out.extend_from_slice(raw);
            }
            b"usage" => {
                usage = crate::wire::json::from_slice::<Option<Usage>>(raw).ok().flatten().map(|mut u| {
                    if u.total_tokens == 0 {
                        u.total_tokens = u.prompt_tokens;
                    }
                    u
                });
                if usage.is_some() {
                    out.extend_from_slice(b",\"usage\":");
                    out.extend_from_slice(raw);
                }
            }
            b"error" => error = Some(m.value),
            _ => {}
        }
        Ok(())
    })
    .map_err(|e| EmbedNormalizeError::Invalid(e.to_string()))?;
    if let Some(r) = error.filter(|_| !data) {
        let message = std::str::from_utf8(&input[r])
            .ok()
            .and_then(|t| serde_json::from_str::<&RawValue>(t).ok())
            .map(super::upstream_error_message)
            .unwrap_or_else(|| "upstream error".to_owned());
        return Err(EmbedNormalizeError::Upstream(message));
    }
    if !data {
        return Err(EmbedNormalizeError::Invalid("no `data` in the embeddings response".into()));
    }
    out.extend_from_slice(b",\"model\":");
    write_str(&mut out, alias);
    let usage = match usage {
        Some(u) => u,
        None => {
            let prompt = estimate_tokens(request_bytes);
            out.extend_from_slice(format!(",\"usage\":{{\"prompt_tokens\":{prompt},\"total_tokens\":{prompt}}}").as_bytes());
            Usage { prompt_tokens: prompt, completion_tokens: 0, total_tokens: prompt }
        }
    };
    out.push(b'}');
    Ok((Bytes::from(out), usage))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parse(v: Value) -> Result<EmbedRequest, RequestError> {
        EmbedRequest::parse(Bytes::from(v.to_string()))
    }

    #[test]
    fn requests_are_peeked_and_model_rewritten_in_place() {
        let body = r#"{"input": ["a", "b"], "model" : "emb", "dimensions": 3, "encoding_format": "base64", "user": "u1"}"#;
        let r = EmbedRequest::parse(Bytes::from(body)).unwrap();
        assert_eq!(r.model, "emb");
        assert_eq!(r.input, InputShape::Texts(2));
        assert_eq!(
            &r.body_with_model("text-embedding-3-small")[..],
            br#"{"input": ["a", "b"], "model" : "text-embedding-3-small", "dimensions": 3, "encoding_format": "base64", "user": "u1"}"#
        );
        let f = r.fields().unwrap();
        assert!(f.base64());
        assert_eq!(f.dimensions, Some(3));
        assert_eq!(f.user.as_deref(), Some("u1"));
        assert_eq!(f.input.texts().unwrap(), ["a", "b"]);
    }

    #[test]
    fn input_shapes() {
        assert_eq!(parse(json!({"model": "m", "input": "x"})).unwrap().input, InputShape::Text);
        assert_eq!(parse(json!({"model": "m", "input": [1, 2, 3]})).unwrap().input, InputShape::Tokens);
        assert_eq!(parse(json!({"model": "m", "input": [[1], [2, 3]]})).unwrap().input, InputShape::TokenBatches(2));
        let r = parse(json!({"model": "m", "input": [[1], [2, 3]]})).unwrap();
        assert_eq!(r.fields().unwrap().input, EmbedInput::TokenBatches(vec![vec![1], vec![2, 3]]));
        assert!(r.fields().unwrap().input.texts().is_none());
        for bad in [json!({"model": "m", "input": 5}), json!({"model": "m", "input": ["a", 1]}), json!({"model": "m", "input": {}})] {
            assert_eq!(parse(bad).unwrap_err().code, Some("invalid_type"));
        }
        assert_eq!(parse(json!({"model": "m", "input": []})).unwrap_err().code, Some("invalid_value"));
    }

    #[test]
    fn missing_and_malformed_fields_are_rejected() {
        assert_eq!(parse(json!({"input": "x"})).unwrap_err().param, Some("model"));
        assert_eq!(parse(json!({"model": "m"})).unwrap_err().param, Some("input"));
        assert_eq!(parse(json!({"model": "m", "input": null})).unwrap_err().param, Some("input"));
        assert_eq!(parse(json!({"model": 3, "input": "x"})).unwrap_err().code, Some("invalid_type"));
        assert_eq!(EmbedRequest::parse(Bytes::from_static(b"{\"model\":")).unwrap_err().code, Some("invalid_json"));
        let r = parse(json!({"model": "m", "input": "x", "encoding_format": "int8"})).unwrap();
        assert_eq!(r.fields().unwrap_err().param, Some("encoding_format"));
    }

    #[test]
    fn base64_matches_the_standard_encoding() {
        // 1.0f32 = 00 00 80 3f; 2.0f32 = 00 00 00 40.
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32(&[1.0, 2.0]), "AACAPwAAAEA=");
        assert_eq!(base64_f32(&[1.0, 2.0, -0.5]), "AACAPwAAAEAAAAC/");
        assert_eq!(base64_f32(&[]), "");
    }

    #[test]
    fn list_bodies_have_openais_shape() {
        let u = Usage { prompt_tokens: 4, completion_tokens: 0, total_tokens: 4 };
        let v: Value = serde_json::from_slice(&list_body("emb", &[vec![0.5, -1.0], vec![0.25, 0.0]], false, u)).unwrap();
        assert_eq!(
            v,
            json!({"object": "list", "data": [
                {"object": "embedding", "index": 0, "embedding": [0.5, -1.0]},
                {"object": "embedding", "index": 1, "embedding": [0.25, 0.0]}],
                "model": "emb", "usage": {"prompt_tokens": 4, "total_tokens": 4}})
        );
        let v: Value = serde_json::from_slice(&list_body("emb", &[vec![1.0]], true, u)).unwrap();
        assert_eq!(v["data"][0]["embedding"], "AACAPw==");
    }

    #[test]
    fn upstream_lists_are_relabelled() {
        let body = br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":"AACAPw=="}],"model":"text-embedding-3-small","usage":{"prompt_tokens":5,"total_tokens":5},"id":"x"}"#;
        let (out, usage) = normalize_list(body, "emb", 40).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "emb");
        assert_eq!(v["data"][0]["embedding"], "AACAPw==");
        assert!(v.get("id").is_none());
        assert_eq!(usage.prompt_tokens, 5);
        // No usage: estimated.
        let (out, usage) = normalize_list(br#"{"data":[]}"#, "emb", 40).unwrap();
        assert_eq!(usage.prompt_tokens, 10);
        assert_eq!(serde_json::from_slice::<Value>(&out).unwrap()["usage"]["total_tokens"], 10);
        assert!(matches!(normalize_list(br#"{"error":{"message":"boom"}}"#, "e", 1), Err(EmbedNormalizeError::Upstream(m)) if m == "boom"));
        assert!(matches!(normalize_list(br#"{"object":"list"}"#, "e", 1), Err(EmbedNormalizeError::Invalid(_))));
    }
}

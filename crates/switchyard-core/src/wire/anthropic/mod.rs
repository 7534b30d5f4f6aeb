//! The Anthropic Messages API wire format and its translation to and from OpenAI's chat format,
//! in both directions, as pure functions (no I/O): the `anthropic` provider uses the OpenAI →
//! Anthropic request and Anthropic → OpenAI answer halves, the `/v1/messages` ingress the other
//! two. Shapes follow Anthropic's API reference (docs.anthropic.com/en/api/messages,
//! /en/docs/build-with-claude/streaming, /en/api/errors); the fixtures in
//! `crates/switchyard-fakes/fixtures/anthropic/` are examples of them.

mod request;
mod response;
mod stream;
pub mod types;

use std::fmt;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::json;

pub use request::{to_anthropic, to_openai};
pub use response::{
    arguments_to_input, completion_from_message, finish_from_stop_reason, message_from_completion, message_id,
    stop_reason_from_finish, tool_use_from_call, usage_from_openai, usage_to_openai,
};
pub use stream::{ToAnthropic, ToOpenAi, merge_usage};

/// A request that cannot be expressed in the other format (an HTTP 400 for the caller).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TranslateError(pub String);

impl TranslateError {
    pub fn new(message: impl Into<String>) -> TranslateError {
        TranslateError(message.into())
    }
}

impl fmt::Display for TranslateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TranslateError {}

/// Anthropic's error `type` for an HTTP status, as its API uses them.
pub fn error_type_for_status(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// The `type` of one stream event's JSON (its SSE `event:` name).
pub fn event_type(data: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Typed {
        #[serde(rename = "type")]
        kind: String,
    }
    crate::wire::json::from_slice::<Typed>(data).ok().map(|t| t.kind)
}

/// A message (or a `message_start` event) with its `model` replaced by `alias`, every other byte
/// as the upstream sent it; `None` if there is no `model` string where one is expected.
pub fn relabel_model(data: &[u8], alias: &str) -> Option<Bytes> {
    let text = std::str::from_utf8(data).ok()?;
    let entries = json::entries(text).ok()?;
    let object = match entries.iter().find(|(k, _)| k == "message") {
        Some((_, message)) => json::entries(message.get()).ok()?,
        None => entries,
    };
    let model: &RawValue = object.iter().find(|(k, _)| k == "model").map(|(_, v)| *v)?;
    let start = model.get().as_ptr() as usize - text.as_ptr() as usize;
    let end = start + model.get().len();
    let mut out = Vec::with_capacity(data.len() + alias.len());
    out.extend_from_slice(&data[..start]);
    json::write_str(&mut out, alias);
    out.extend_from_slice(&data[end..]);
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests;

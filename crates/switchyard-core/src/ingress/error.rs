//! Errors as the caller's protocol expects them: OpenAI-shaped JSON with the right status, so
//! the official SDKs raise their matching exception classes.

use std::borrow::Cow;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use tokio::time::Instant;

use crate::providers::{ProviderError, TimeoutKind};
use crate::config::Exhausted;
use crate::router::Alias;
use crate::router::chain::{ChainError, Outcome, Trace};
use crate::wire::openai::RequestError;

#[derive(Clone, Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub error_type: Cow<'static, str>,
    pub code: Option<Cow<'static, str>>,
    pub param: Option<String>,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    error_type: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: StatusCode, error_type: &'static str, code: Option<&'static str>, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            error_type: Cow::Borrowed(error_type),
            code: code.map(Cow::Borrowed),
            param: None,
            retry_after: None,
        }
    }

    /// `{"error": {"message", "type", "param", "code"}}`
    pub fn json(&self) -> Bytes {
        let env = Envelope {
            error: Body {
                message: &self.message,
                error_type: &self.error_type,
                param: self.param.as_deref(),
                code: self.code.as_deref(),
            },
        };
        Bytes::from(serde_json::to_vec(&env).expect("serializing an error cannot fail"))
    }

    /// The same error as an SSE event, ending a stream that already started.
    pub fn sse_event(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.message.len() + 96);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&self.json());
        out.extend_from_slice(b"\n\n");
        Bytes::from(out)
    }

    pub fn bad_request(e: RequestError) -> Self {
        ApiError {
            param: e.param.map(str::to_owned),
            code: e.code.map(Cow::Borrowed),
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", None, e.message)
        }
    }

    /// A `x-switchyard-*` request header with a value the gateway cannot use.
    pub fn invalid_header(name: &str, message: String) -> Self {
        ApiError {
            param: Some(name.into()),
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", Some("invalid_header"), format!("Header {name}: {message}"))
        }
    }

    pub fn model_not_found(model: &str) -> Self {
        ApiError {
            param: Some("model".into()),
            ..ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("model_not_found"),
                format!("The model `{model}` does not exist or you do not have access to it. GET /v1/models lists the models this gateway serves."),
            )
        }
    }

    pub fn body_too_large(limit: usize) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            Some("request_too_large"),
            format!("The request body is larger than this gateway's limit of {limit} bytes (server.max_body_bytes)."),
        )
    }

    /// The error for a call whose chain did not produce an answer.
    pub fn from_chain(alias: &Alias, err: ChainError, trace: &Trace) -> Self {
        let mut e = Self::from_chain_error(&alias.name, err, trace);
        if let Exhausted::Unavailable { retry_after } = alias.routing.on_exhausted {
            if e.status.is_server_error() || e.status == StatusCode::TOO_MANY_REQUESTS {
                e.status = StatusCode::SERVICE_UNAVAILABLE;
                e.error_type = Cow::Borrowed("server_error");
                e.code = Some(Cow::Borrowed("no_available_targets"));
                e.retry_after = Some(retry_after.as_secs_f64().ceil().max(1.0) as u64);
            }
        }
        e
    }

    fn from_chain_error(alias: &str, err: ChainError, trace: &Trace) -> Self {
        let (last, retry_at) = match err {
            ChainError::Caller(s) => {
                return ApiError {
                    status: StatusCode::from_u16(s.status).unwrap_or(StatusCode::BAD_REQUEST),
                    message: s.message,
                    error_type: s.error_type.map_or(Cow::Borrowed("invalid_request_error"), Cow::Owned),
                    code: s.code.map(Cow::Owned),
                    param: s.param,
                    retry_after: None,
                };
            }
            ChainError::Exhausted { last, retry_at } => (last, retry_at),
        };
        let summary = trace.summary();
        if last.is_none() && !trace.attempts.is_empty() && trace.attempts.iter().all(|a| matches!(a.outcome, Outcome::Filtered(_))) {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("unsupported_by_targets"),
                format!("No target of model `{alias}` can serve this request: {summary}"),
            );
        }
        let Some(last) = last else {
            let secs = retry_at.map_or(1, |t| t.saturating_duration_since(Instant::now()).as_secs_f64().ceil().max(1.0) as u64);
            return ApiError {
                retry_after: Some(secs),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    Some("no_available_targets"),
                    format!("No target of model `{alias}` is available right now (circuit breakers open): {summary}"),
                )
            };
        };
        let message = format!("All targets of model `{alias}` failed ({} attempts sent): {summary}", trace.sent);
        let retry_after = last.retry_after().map(|d| d.as_secs_f64().ceil().max(1.0) as u64);
        let (status, error_type, code) = match &last {
            ProviderError::Status(s) if s.status == 429 => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", "rate_limit_exceeded"),
            ProviderError::Status(s) if s.context_length => {
                (StatusCode::BAD_REQUEST, "invalid_request_error", "context_length_exceeded")
            }
            ProviderError::Status(s) if s.status == 503 || s.status == 529 => {
                (StatusCode::SERVICE_UNAVAILABLE, "server_error", "upstream_unavailable")
            }
            ProviderError::Status(s) if s.status == 504 || s.status == 408 => {
                (StatusCode::GATEWAY_TIMEOUT, "server_error", "upstream_timeout")
            }
            ProviderError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "server_error", "upstream_timeout"),
            ProviderError::Unsupported(_) => (StatusCode::BAD_REQUEST, "invalid_request_error", "unsupported_by_targets"),
            ProviderError::Refused(_) => (StatusCode::BAD_REQUEST, "invalid_request_error", "content_filter"),
            _ => (StatusCode::BAD_GATEWAY, "server_error", "upstream_error"),
        };
        ApiError { retry_after, ..ApiError::new(status, error_type, Some(code), message) }
    }

    /// The error event that ends a stream broken after it was committed.
    pub fn mid_stream(e: &ProviderError) -> Self {
        let code = match e {
            ProviderError::Timeout(TimeoutKind::Idle) => "upstream_idle_timeout",
            ProviderError::Timeout(_) => "upstream_timeout",
            _ => "upstream_stream_error",
        };
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "server_error",
            Some(code),
            format!("The upstream stream failed after it had started: {e}"),
        )
    }
}

/// The same errors as Anthropic's API renders them, for the `/v1/messages` ingress: the status
/// and message are the OpenAI error's, the `type` is Anthropic's for that status, so the
/// Anthropic SDKs raise their matching exception classes.
impl ApiError {
    /// Anthropic's error `type` for this error's status.
    pub fn anthropic_type(&self) -> &'static str {
        crate::wire::anthropic::error_type_for_status(self.status.as_u16())
    }

    /// `{"type": "error", "error": {"type", "message"}}`.
    pub fn anthropic_json(&self) -> Bytes {
        let body = crate::wire::anthropic::types::ErrorResponse::new(self.anthropic_type(), self.message.clone());
        Bytes::from(serde_json::to_vec(&body).expect("serializing an error cannot fail"))
    }

    /// The error as an Anthropic-shaped HTTP response (with `Retry-After` when known).
    /// Upstream overload is Anthropic's 529 `overloaded_error` (the Anthropic SDKs raise
    /// `OverloadedError` for it) rather than the 503 OpenAI clients get.
    pub fn into_anthropic_response(mut self) -> Response {
        if self.code.as_deref() == Some("upstream_unavailable") {
            self.status = StatusCode::from_u16(529).expect("529 is a valid status");
        }
        let mut resp = (self.status, self.anthropic_json()).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, self.json()).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

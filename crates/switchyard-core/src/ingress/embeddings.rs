//! `POST /v1/embeddings`: OpenAI's embeddings API, routed through the same aliases, chains,
//! retries and breakers as chat ([`chain::run_embed`]). Only `model` and the structure of
//! `input` are read here; each target's adapter sends the request its own way (OpenAI-compatible
//! passthrough, Ollama `/api/embed`, Gemini `embedContent` / `batchEmbedContents`, the mock) and
//! answers in OpenAI's `{"object": "list", ...}` shape labelled with the alias. Targets without
//! an embeddings API (e.g. `anthropic`) are passed over.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use tokio::time::Instant;

use super::error::ApiError;
use super::respond::{chain_failed, ok, rejected, request_body, served_by, served_headers};
use super::{AppState, RequestId};
use super::route::route;
use crate::router::chain;
use crate::router::plan::plan;
use crate::telemetry::request_log::RequestLog;
use crate::wire::openai::embeddings::EmbedRequest;

pub async fn embeddings(State(state): State<Arc<AppState>>, Extension(id): Extension<RequestId>, req: axum::extract::Request) -> Response {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let limit = state.config.server.max_body_bytes;
    let Some(bytes) = request_body(body, limit).await else {
        return reject(&id, "-", ApiError::body_too_large(limit));
    };
    let request = match EmbedRequest::parse(bytes) {
        Ok(r) => r,
        Err(e) => return reject(&id, "-", ApiError::bad_request(e)),
    };
    let mut routed = match route(&state, &parts.headers, &request.model, None) {
        Ok(r) => r,
        Err(e) => return reject(&id, &request.model, e),
    };
    let alias = routed.alias.clone();
    let plan = plan(&alias, &mut routed.features, routed.opts);
    let mut log = RequestLog::new(id.0.clone(), alias.name.clone(), false, started);
    let deadline = started + alias.total;
    let served = match chain::run_embed(&alias, &plan, &request, deadline, &mut log.trace).await {
        Ok(s) => s,
        Err(e) => return chain_failed(&alias, e, &mut log, IntoResponse::into_response),
    };
    let target = served.target;
    served_by(&mut log, target);
    log.status = 200;
    log.usage = served.answer.usage;
    log.emit("ok");
    let mut headers = served_headers(target, log.trace.sent, false);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    ok(headers, Body::from(served.answer.body))
}

/// Logs and renders an error found before routing (bad body, unknown alias).
fn reject(id: &RequestId, alias: &str, err: ApiError) -> Response {
    rejected(id, alias, err, IntoResponse::into_response)
}

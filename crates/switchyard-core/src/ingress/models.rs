//! `GET /v1/models`, `GET /health`, `GET /ready`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

use super::AppState;
use super::error::ApiError;

/// The OpenAI model-list body for the given aliases.
pub fn models_json(aliases: &[Arc<str>]) -> Bytes {
    let data: Vec<_> = aliases.iter().map(|a| model_object(a)).collect();
    Bytes::from(json!({"object": "list", "data": data}).to_string())
}

fn model_object(alias: &str) -> serde_json::Value {
    json!({"id": alias, "object": "model", "created": 0, "owned_by": "switchyard"})
}

fn json_response(status: StatusCode, body: Bytes) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub async fn list(State(state): State<Arc<AppState>>) -> Response {
    json_response(StatusCode::OK, state.models_json.clone())
}

pub async fn retrieve(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match state.routes.alias(&id) {
        Some(a) => json_response(StatusCode::OK, Bytes::from(model_object(&a.name).to_string())),
        None => ApiError::model_not_found(&id).into_response(),
    }
}

/// Liveness: the process is up and serving.
pub async fn health() -> Response {
    json_response(StatusCode::OK, Bytes::from_static(br#"{"status":"ok"}"#))
}

/// Readiness: 200 when every alias has at least one usable target: its breaker not open and
/// the active health checks not marking it unhealthy (or a fallback alias / static answer).
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let unready: Vec<&str> = state
        .routes
        .alias_names
        .iter()
        .filter(|a| !state.routes.aliases[*a].is_ready())
        .map(|a| a.as_ref())
        .collect();
    let status = if unready.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if unready.is_empty() { "ready" } else { "unready" },
        "aliases": state.routes.alias_names.len(),
        "unready_aliases": unready,
    });
    json_response(status, Bytes::from(body.to_string()))
}

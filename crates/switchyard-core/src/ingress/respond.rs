//! Response plumbing shared by the API handlers: the `x-switchyard-*` headers, and the log
//! line plus error response for a request rejected before routing.

use axum::response::Response;
use http::{HeaderMap, HeaderValue};
use tokio::time::Instant;

use super::error::ApiError;
use super::{RequestId, X_ATTEMPTS, X_MODEL, X_PROVIDER};
use crate::router::{Alias, Target};
use crate::router::chain::ChainError;
use crate::telemetry::request_log::RequestLog;

/// Sets `x-switchyard-attempts`.
pub fn set_attempts(headers: &mut HeaderMap, sent: u32) {
    headers.insert(X_ATTEMPTS.clone(), HeaderValue::from(sent));
}

/// The headers of an answer from `target` after `sent` upstream attempts.
pub fn served_headers(target: &Target, sent: u32) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(8);
    headers.insert(X_PROVIDER.clone(), target.provider_header.clone());
    headers.insert(X_MODEL.clone(), target.model_header.clone());
    set_attempts(&mut headers, sent);
    headers
}

/// Notes in the log which target answered (provider, model, and its price for the spend).
pub fn served_by(log: &mut RequestLog, target: &Target) {
    log.provider = Some(target.provider_name.clone());
    log.upstream_model = Some(target.model.clone());
    log.spend = target.routing.price.map(|p| (target.stats.clone(), p));
}

/// Logs a request rejected before routing (bad body, unknown alias) and renders its error
/// with `render` (the caller's protocol).
pub fn rejected(id: &RequestId, alias: &str, err: ApiError, render: fn(ApiError) -> Response) -> Response {
    let mut log = RequestLog::new(id.as_str().to_owned(), alias.into(), false, Instant::now());
    log.status = err.status.as_u16();
    log.emit("rejected");
    let mut resp = render(err);
    set_attempts(resp.headers_mut(), 0);
    resp
}

/// Logs a call whose chain produced no answer and renders its error with `render`.
pub fn chain_failed(alias: &Alias, e: ChainError, log: &mut RequestLog, render: fn(ApiError) -> Response) -> Response {
    let err = ApiError::from_chain(alias, e, &log.trace);
    log.status = err.status.as_u16();
    log.emit("error");
    let mut resp = render(err);
    set_attempts(resp.headers_mut(), log.trace.sent);
    resp
}

//! `GET /admin/providers`: every `provider/model` target with its health, breaker, traffic,
//! latency, rate-limit headroom, hedges, spend and last failure (field names documented in the
//! README, "Admin API"). Not authenticated yet: keep the gateway's port private.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::AppState;
use crate::providers::http::redact;
use crate::router::Routes;

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// RFC 3339 in UTC with microseconds, `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
fn rfc3339(t: SystemTime) -> String {
    let mut buf = [0u8; 27];
    String::from_utf8_lossy(crate::telemetry::request_log::rfc3339_micros(t, &mut buf)).into_owned()
}

/// The `/admin/providers` document.
pub fn providers_json(routes: &Routes, window: Duration) -> Value {
    let window_requests: u64 = routes.targets.values().map(|t| t.stats.window_counts().0).sum();
    let targets: Vec<Value> = routes
        .targets
        .values()
        .map(|t| {
            let s = &t.stats;
            let (w_requests, w_errors) = s.window_counts();
            let (requests, errors) = s.totals();
            let headroom = s.headroom_snapshot();
            let (hedges, hedge_wins, hedge_spend) = s.hedge_totals();
            let probe = t.probe.snapshot();
            let share = if window_requests == 0 { 0.0 } else { w_requests as f64 / window_requests as f64 };
            json!({
                "target": t.label.as_ref(),
                "provider": t.provider_name.as_ref(),
                "model": t.model.as_ref(),
                "kind": t.kind,
                "aliases": t.aliases.iter().map(|a| a.as_ref()).collect::<Vec<_>>(),
                "health": s.health().as_str(),
                "health_check": {
                    "enabled": t.health.enabled,
                    "active": probe.active,
                    "probe": t.health.probe.as_str(),
                    "interval_ms": ms(t.health.interval),
                    "probes": probe.probes,
                    "failures": probe.failures,
                    "consecutive_failures": probe.consecutive_failures,
                    "last_at": probe.last_at.map(rfc3339),
                    "last_error": probe.last_error.as_deref().map(|e| redact(e, &[])),
                },
                "breaker": {
                    "state": t.breaker.state().as_str(),
                    "times_opened": t.breaker.times_opened(),
                },
                "in_flight": s.in_flight(),
                "latency_ms": {
                    "ewma": s.ewma().map(ms),
                    "p95": s.p95().map(ms),
                },
                "window": {
                    "requests": w_requests,
                    "errors": w_errors,
                    "error_ratio": round6(s.error_ratio()),
                    "traffic_share": round6(share),
                },
                "total": {
                    "requests": requests,
                    "errors": errors,
                },
                "rate_limit": {
                    "headroom": round6(s.headroom()),
                    "remaining_requests": headroom.remaining_requests,
                    "limit_requests": headroom.limit_requests,
                    "remaining_tokens": headroom.remaining_tokens,
                    "limit_tokens": headroom.limit_tokens,
                    "reset_in_ms": headroom.reset_in.map(ms),
                    "blocked_for_ms": headroom.blocked_for.map(ms),
                },
                "hedges": {
                    "started": hedges,
                    "won": hedge_wins,
                    "lost_spend_usd": round6(hedge_spend),
                },
                "spend_usd": round6(s.spend()),
                "last_failure": s.last_failure().map(|f| json!({
                    "at": rfc3339(f.at),
                    "reason": redact(&f.reason, &[]),
                })),
            })
        })
        .collect();
    json!({
        "window_seconds": window.as_secs_f64(),
        "window_requests": window_requests,
        "targets": targets,
    })
}

pub async fn providers(State(state): State<Arc<AppState>>) -> Response {
    let body = providers_json(&state.routes, state.config.routing.window).to_string();
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_every_target_once_with_its_aliases() {
        let config = crate::Config::from_toml_str(
            r#"
[providers.m]
kind = "mock"
[providers.n]
kind = "mock"
[providers.n.health]
enabled = true
probe = "completion"
[models.one]
targets = ["m/x", "n/y"]
[models.two]
targets = ["n/y"]
"#,
            "t.toml",
        )
        .unwrap();
        let routes = Routes::build(&config).unwrap();
        let doc = providers_json(&routes, config.routing.window);
        let targets = doc["targets"].as_array().unwrap();
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[0]["target"], "m/x");
        assert_eq!(targets[0]["aliases"], json!(["one"]));
        assert_eq!(targets[0]["health_check"]["enabled"], false);
        assert_eq!(targets[1]["aliases"], json!(["one", "two"]));
        assert_eq!(targets[1]["kind"], "mock");
        assert_eq!(targets[1]["health_check"]["probe"], "completion");
        assert_eq!(targets[1]["health"], "unknown");
        assert_eq!(targets[1]["breaker"]["state"], "closed");
        assert_eq!(targets[1]["last_failure"], Value::Null);
        assert_eq!(targets[1]["window"]["traffic_share"], 0.0);
        // Failures show with their time and a redacted reason.
        routes.targets["m/x"].stats.record_failure(&"HTTP 401: bad key sk-abcdefghijklmnopqrstuvwxyz");
        let doc = providers_json(&routes, config.routing.window);
        let failure = &doc["targets"][0]["last_failure"];
        let at = failure["at"].as_str().unwrap();
        assert!(at.len() == 27 && at.as_bytes()[10] == b'T' && at.ends_with('Z'), "RFC 3339: {at}");
        assert_eq!(failure["reason"], "HTTP 401: bad key [REDACTED]");
        assert_eq!(doc["targets"][0]["window"]["traffic_share"], 1.0);
    }
}

//! Switchyard: an LLM gateway that keeps answering when providers fail.
//!
//! The path of a request: [`ingress`] (the OpenAI-compatible HTTP API) → [`router`] (alias →
//! chain of targets, retries, circuit breakers) → [`providers`] (one adapter per upstream wire
//! format). Beside the path: [`config`] and [`telemetry`]. [`wire`] holds the shared formats.
//!
//! Embedding it in a Rust program:
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = switchyard_core::Config::from_toml_str(r#"
//!     [providers.local]
//!     kind = "mock"
//!     [models.chat]
//!     targets = ["local/any-model"]
//! "#, "inline")?;
//! let gateway = switchyard_core::Gateway::new(config)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! gateway.serve(listener, std::future::pending()).await?;
//! # Ok(()) }
//! ```

pub mod catalog;
pub mod config;
pub mod ingress;
pub mod providers;
pub mod router;
pub mod telemetry;
pub mod tokens;
pub mod wire;

use std::future::Future;
use std::sync::Arc;

pub use config::{Config, ConfigError};
pub use router::Routes;

/// A configured gateway, ready to serve.
#[derive(Clone)]
pub struct Gateway {
    state: Arc<ingress::AppState>,
}

impl Gateway {
    /// Builds providers, breakers and aliases from a validated config. Opens no connection.
    pub fn new(config: Config) -> Result<Gateway, ConfigError> {
        let routes = Routes::build(&config)?;
        let models_json = ingress::models::models_json(&routes.alias_names);
        Ok(Gateway { state: Arc::new(ingress::AppState { config, routes, models_json }) })
    }

    pub fn config(&self) -> &Config {
        &self.state.config
    }

    pub fn routes(&self) -> &Routes {
        &self.state.routes
    }

    /// The HTTP application, to mount in another axum app or serve yourself (then start the
    /// health checks with [`Gateway::start_health_checks`]).
    pub fn router(&self) -> axum::Router {
        ingress::app(self.state.clone())
    }

    /// Spawns the active health checks (`[health] enabled`) on the current Tokio runtime; they
    /// run until the returned guard is dropped. `None` when no provider enables them (nothing
    /// is spawned). [`Gateway::serve`] and [`Gateway::serve_threads`] call it themselves and
    /// stop the checks when `shutdown` resolves.
    pub fn start_health_checks(&self) -> Option<router::health::HealthGuard> {
        router::health::HealthChecks::new(&self.state.routes).map(router::health::spawn)
    }

    /// Serves on `addr` with `threads` server threads (one single-threaded runtime and one
    /// `SO_REUSEPORT` listener each) until `shutdown` resolves; see
    /// [`ingress::serve_threads`]. Bind `listener` with [`ingress::bind_reuseport`].
    pub async fn serve_threads(
        self,
        listener: std::net::TcpListener,
        threads: usize,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let grace = self.state.config.server.shutdown_grace;
        let shutdown = self.with_health_checks(shutdown);
        ingress::serve_threads(listener, threads, ingress::served(self.state.clone()), grace, shutdown).await
    }

    /// Starts the health checks on the current runtime and returns `shutdown`, which now also
    /// stops them when it resolves (or when it is dropped, as the server ends).
    fn with_health_checks(&self, shutdown: impl Future<Output = ()> + Send + 'static) -> impl Future<Output = ()> + Send + 'static {
        let guard = self.start_health_checks();
        async move {
            shutdown.await;
            drop(guard);
        }
    }

    /// Serves on `listener` until `shutdown` resolves, then drains for `server.shutdown_grace`.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let grace = self.state.config.server.shutdown_grace;
        let shutdown = self.with_health_checks(shutdown);
        ingress::serve_app(listener, ingress::served(self.state.clone()), grace, shutdown).await
    }
}

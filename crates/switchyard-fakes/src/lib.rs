//! Scriptable fake LLM provider upstreams on loopback.
//!
//! [`FakeUpstream`] is a small hyper server that speaks the OpenAI Chat Completions and
//! Embeddings wire formats (JSON completions, SSE streams, embeddings lists, error bodies) and
//! answers each chat or embeddings request with the next [`Step`] of a [`Script`]: a normal answer, an HTTP error, a delay, a connection reset, a
//! hang, or one of several mid-stream failures. Integration tests use it to inject failures into
//! a gateway's upstreams; benchmarks use it (or the `switchyard-fake-upstream` binary) as a fast
//! upstream.
//!
//! ```no_run
//! # async fn demo() {
//! use switchyard_fakes::{FakeUpstream, Script, Step};
//!
//! let upstream = FakeUpstream::start(
//!     Script::new().then(Step::status(503)).then(Step::rate_limited("1")),
//! )
//! .await;
//! // Point the client at `upstream.base_url()`: the first request gets a 503, the second a 429,
//! // every later one a normal completion.
//! assert_eq!(upstream.requests(), 0);
//! # }
//! ```

pub mod anthropic;
pub mod bedrock;
mod body;
pub mod gemini;
mod handler;
mod ids;
pub mod ollama;
mod precise;
mod script;
pub mod server;
mod stamp;
mod upstream;
mod wire;

pub use precise::use_precise_timer;
pub use stamp::stamp_chunks;
pub use script::{Reply, Script, Step};
pub use upstream::{FakeUpstream, Recorded};

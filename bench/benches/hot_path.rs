//! Micro-benchmarks of Switchyard's request path that touches no network, on the library
//! `switchyard-core`:
//!
//! - `parse/*`: `ChatRequest::parse` (peek `model`, `messages`, `stream`; validate the JSON) of a
//!   typical body and of a 100-message one;
//! - `route/alias`: alias lookup in the routing table built by `Routes::build`;
//! - `rewrite/body_with_model`: the upstream body with `model` replaced in place;
//! - `request_path/typical`: the three above together, what ingress does before the upstream call;
//! - `normalize_completion/*`, `normalize_chunk/*`: answers from OpenAI and Groq (with `x_groq`)
//!   normalized to the OpenAI shape;
//! - `sse_relay/*`: a 50-content-chunk stream (one network read per event) through `SseParser`,
//!   each chunk normalized (with the stream's remembered prefix, as the gateway does) and
//!   re-framed as `data: ...\n\n`; throughput is per event, so the
//!   time per element is the relay cost of one chunk;
//! - `sse_translate/*`: a 50-content-chunk stream translated between the formats, per event as
//!   the native adapters do it: Anthropic's events (parsed, deserialized) to OpenAI chunks (the
//!   `anthropic` provider serving an OpenAI-format caller), and normalized OpenAI chunks to
//!   Anthropic's events (`/v1/messages` served by an OpenAI-format target); Gemini's
//!   `streamGenerateContent` events to OpenAI chunks (the `gemini` provider); and Bedrock's
//!   `ConverseStream` event-stream messages to OpenAI chunks (the `bedrock` provider), and
//!   Ollama's `/api/chat` NDJSON lines to OpenAI chunks (the `ollama` provider);
//! - `translate_request/openai_to_anthropic`: a typical OpenAI request deserialized, translated
//!   to a Messages request and serialized, as the `anthropic` provider sends it;
//!   `..._agent`: the same for an agent's turn (content parts, an image, a tool call and its
//!   result, a tool definition); `translate_request/anthropic_to_openai`: the typical request
//!   as Anthropic's Messages body, deserialized, translated and serialized as `/v1/messages`
//!   does for an OpenAI-format target, and `..._agent` the agent's turn in content blocks.
//!
//! `cargo bench -p switchyard-bench` (about a minute). Each benchmark measures for ~2 s.

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde::Serialize;
use serde::de::DeserializeOwned;
use switchyard_bench::fixtures;
use switchyard_core::wire::openai::{ChatRequest, ChunkPrefix, normalize_chunk, normalize_completion, normalize_stream_chunk};
use switchyard_core::wire::anthropic::types::{MessagesRequest, StreamEvent};
use switchyard_core::providers::ollama::StreamTranslator as OllamaTranslator;
use switchyard_core::wire::bedrock::AnswerMeta as BedrockMeta;
use switchyard_core::wire::bedrock::stream::StreamTranslator as BedrockTranslator;
use switchyard_core::wire::gemini::stream::SseTranslator;
use switchyard_core::wire::gemini::{AnswerMeta, CallIds};
use switchyard_core::wire::anthropic::{ToAnthropic, ToOpenAi, to_anthropic, to_openai};
use switchyard_core::wire::openai::types::{ChatCompletionChunk, ChatCompletionRequest};
use switchyard_core::wire::ndjson::NdjsonParser;
use switchyard_core::wire::chunk::Chunk;
use switchyard_core::wire::sse::{SseParser, data_event};
use switchyard_core::{Config, Routes};

const ALIAS: &str = "chat";

/// The usual case: the caller did not ask for `stream_options.include_usage`, so the gateway's
/// own usage request is stripped from what it relays.
const KEEP_USAGE: bool = false;

fn routes() -> Routes {
    let config = Config::from_toml_str(
        r#"
        [providers.openai]
        kind = "openai"
        base_url = "http://127.0.0.1:9/v1"
        api_key = "sk-bench"

        [providers.groq]
        kind = "openai"
        base_url = "http://127.0.0.1:10/openai/v1"
        api_key = "gsk-bench"

        [models.chat]
        targets = ["openai/gpt-4o-mini", "groq/llama-3.1-8b-instant"]

        [models.fast]
        targets = ["groq/llama-3.1-8b-instant"]

        [models.smart]
        targets = ["openai/gpt-4o", "groq/llama-3.3-70b-versatile"]
        "#,
        "bench.toml",
    )
    .expect("the benchmark config is valid");
    Routes::build(&config).expect("the benchmark routes build")
}

fn parse(c: &mut Criterion) {
    let typical = Bytes::from(fixtures::chat_request(ALIAS, false));
    let large = Bytes::from(fixtures::large_chat_request(ALIAS, 100));
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Bytes(typical.len() as u64));
    group.bench_function("typical", |b| {
        b.iter(|| ChatRequest::parse(black_box(typical.clone())).expect("valid"))
    });
    group.throughput(Throughput::Bytes(large.len() as u64));
    group.bench_function("large_100_messages", |b| {
        b.iter(|| ChatRequest::parse(black_box(large.clone())).expect("valid"))
    });
    group.finish();
}

fn route(c: &mut Criterion) {
    let routes = routes();
    c.bench_function("route/alias", |b| {
        b.iter(|| {
            routes
                .alias(black_box(ALIAS))
                .expect("alias exists")
                .targets
                .len()
        })
    });
}

fn rewrite(c: &mut Criterion) {
    let request =
        ChatRequest::parse(Bytes::from(fixtures::chat_request(ALIAS, false))).expect("valid");
    c.bench_function("rewrite/body_with_model", |b| {
        b.iter(|| request.body_with_model(black_box("gpt-4o-mini")))
    });
}

fn request_path(c: &mut Criterion) {
    let routes = routes();
    let body = Bytes::from(fixtures::chat_request(ALIAS, false));
    c.bench_function("request_path/typical", |b| {
        b.iter(|| {
            let request = ChatRequest::parse(black_box(body.clone())).expect("valid");
            let alias = routes.alias(&request.model).expect("alias exists");
            let target = &alias.targets[0];
            request.body_with_model(&target.model)
        })
    });
}

fn normalize(c: &mut Criterion) {
    let openai = fixtures::openai_completion();
    let groq = fixtures::groq_completion();
    let mut group = c.benchmark_group("normalize_completion");
    group.bench_function("openai", |b| {
        b.iter(|| normalize_completion(black_box(openai.as_bytes()), ALIAS).expect("valid"))
    });
    group.bench_function("groq", |b| {
        b.iter(|| normalize_completion(black_box(groq.as_bytes()), ALIAS).expect("valid"))
    });
    group.finish();

    let openai_chunk = fixtures::openai_chunks(1).swap_remove(1);
    let groq_chunks = fixtures::groq_chunks(1);
    let mut group = c.benchmark_group("normalize_chunk");
    group.bench_function("openai_content", |b| {
        b.iter(|| {
            normalize_chunk(black_box(openai_chunk.as_bytes()), ALIAS, KEEP_USAGE).expect("valid")
        })
    });
    group.bench_function("groq_content", |b| {
        b.iter(|| {
            normalize_chunk(black_box(groq_chunks[1].as_bytes()), ALIAS, KEEP_USAGE).expect("valid")
        })
    });
    group.bench_function("groq_finish_x_groq", |b| {
        b.iter(|| {
            normalize_chunk(black_box(groq_chunks[2].as_bytes()), ALIAS, KEEP_USAGE).expect("valid")
        })
    });
    group.finish();
}

/// How [`relay`] treats each chunk.
#[derive(Clone, Copy)]
enum Normalize {
    /// As the gateway does: `normalize_stream_chunk`, the members before `choices` reused
    /// from the previous chunk when their bytes repeat.
    Stream,
    /// Every chunk scanned in full (`normalize_chunk`), to show what the reuse saves.
    EachAlone,
    /// Parse and re-frame only.
    No,
}

/// The stream as the network delivers it: one read per event.
fn reads(payloads: &[String]) -> Vec<Bytes> {
    let mut out: Vec<Bytes> = payloads
        .iter()
        .map(|p| Bytes::from(format!("data: {p}\n\n")))
        .collect();
    out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    out
}

/// Parses every event, normalizes every chunk and frames it for the client, as the gateway's
/// stream relay does; returns the bytes written.
fn relay(reads: &[Bytes], normalize: Normalize) -> usize {
    let mut parser = SseParser::new();
    let mut prefix = ChunkPrefix::default();
    let mut written = 0;
    for read in reads {
        parser.push(read);
        while let Some(event) = parser.next_event().expect("events are small") {
            if &event.data[..] == b"[DONE]" {
                written += b"data: [DONE]\n\n".len();
                continue;
            }
            // The SSE event sent: a normalized chunk comes written as one (`framed`).
            let sent = match normalize {
                Normalize::Stream => normalize_stream_chunk(&event.data, ALIAS, KEEP_USAGE, &mut prefix).expect("valid chunk").framed,
                Normalize::EachAlone => normalize_chunk(&event.data, ALIAS, KEEP_USAGE).expect("valid chunk").framed,
                Normalize::No => data_event(&event.data),
            };
            // Empty: a usage-only chunk the caller did not ask for.
            written += black_box(sent).len();
        }
    }
    written
}

fn sse_relay(c: &mut Criterion) {
    let openai = reads(&fixtures::openai_chunks(50));
    let groq = reads(&fixtures::groq_chunks(50));
    let one_read = Bytes::from(fixtures::sse_stream(&fixtures::openai_chunks(50)));
    let mut group = c.benchmark_group("sse_relay");
    group.throughput(Throughput::Elements(openai.len() as u64));
    group.bench_function("parse_only_openai_50_chunks", |b| {
        b.iter(|| relay(black_box(&openai), Normalize::No))
    });
    group.bench_function("openai_50_chunks", |b| {
        b.iter(|| relay(black_box(&openai), Normalize::Stream))
    });
    group.bench_function("openai_50_chunks_each_scanned_whole", |b| {
        b.iter(|| relay(black_box(&openai), Normalize::EachAlone))
    });
    group.throughput(Throughput::Elements(groq.len() as u64));
    group.bench_function("groq_50_chunks", |b| {
        b.iter(|| relay(black_box(&groq), Normalize::Stream))
    });
    group.throughput(Throughput::Elements(openai.len() as u64));
    group.bench_function("openai_50_chunks_one_read", |b| {
        b.iter(|| relay(black_box(std::slice::from_ref(&one_read)), Normalize::Stream))
    });
    group.finish();
}

/// One translated chunk as the relay sends it (translators write their chunks as SSE events,
/// so this takes those bytes as they are); returns its length.
fn framed(chunk: Chunk) -> usize {
    black_box(chunk.into_sse_event()).len()
}

/// An Anthropic stream as the network delivers it: one read per event.
fn anthropic_reads(events: &[(&str, String)]) -> Vec<Bytes> {
    events.iter().map(|(name, data)| Bytes::from(format!("event: {name}\ndata: {data}\n\n"))).collect()
}

/// Anthropic's events → OpenAI chunks, as the `anthropic` provider relays a stream to an
/// OpenAI-format caller: each SSE event parsed, deserialized, translated, framed; returns the
/// bytes written.
fn anthropic_to_openai(reads: &[Bytes]) -> usize {
    let mut parser = SseParser::new();
    let mut translate = ToOpenAi::new(ALIAS, KEEP_USAGE, 1_735_689_600);
    let mut written = 0;
    for read in reads {
        parser.push(read);
        while let Some(event) = parser.next_event().expect("events are small") {
            // As the provider does: a text delta by the fast path, any other event parsed whole.
            let chunks = match translate.text_delta(&event.data) {
                Some(chunk) => chunk.into_iter().collect(),
                None => {
                    let event: StreamEvent = serde_json::from_slice(&event.data).expect("a valid event");
                    translate.on_event(event).expect("translatable")
                }
            };
            for chunk in chunks {
                written += framed(chunk);
            }
        }
    }
    written
}

/// OpenAI chunks (normalized, as a target's stream yields them) → Anthropic events, as
/// `/v1/messages` relays a stream from an OpenAI-format target; returns the bytes written.
fn openai_to_anthropic(chunks: &[Bytes]) -> usize {
    let mut translate = ToAnthropic::new(ALIAS);
    let mut written = 0;
    for data in chunks {
        // As `/v1/messages` does: a chunk that continues the text by the fast path, any other
        // parsed whole.
        if let Some(frame) = translate.text_chunk(data) {
            written += black_box(frame).len();
            continue;
        }
        let chunk: ChatCompletionChunk = serde_json::from_slice(data).expect("a valid chunk");
        for event in translate.on_chunk(&chunk) {
            written += black_box(event.to_sse()).len();
        }
    }
    for event in translate.finish() {
        written += black_box(event.to_sse()).len();
    }
    written
}

/// Gemini's `streamGenerateContent` events → OpenAI chunks, as the `gemini` provider relays a
/// stream (`SseTranslator`: SSE parsing and translation); returns the bytes written.
fn gemini_to_openai(reads: &[Bytes]) -> usize {
    let meta = AnswerMeta { alias: ALIAS.to_owned(), id: "chatcmpl-x".to_owned(), created: 1_735_689_600, call_ids: CallIds::new("") };
    let mut translate = SseTranslator::new(meta, KEEP_USAGE);
    let mut written = 0;
    for read in reads {
        for chunk in translate.push(read).expect("translatable") {
            written += framed(chunk);
        }
    }
    written
}

/// A Bedrock `ConverseStream` answer as the network delivers it: one read per event-stream
/// message (messageStart, `content_chunks` text deltas, contentBlockStop, messageStop, metadata),
/// each with the padding member Bedrock adds, framed by the fake Bedrock's encoder.
fn bedrock_reads(content_chunks: usize) -> Vec<Bytes> {
    use serde_json::json;
    use switchyard_fakes::bedrock::event;
    let mut reads = vec![event("messageStart", json!({"role": "assistant"}))];
    reads.extend((0..content_chunks).map(|i| event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": format!(" word{i}")}}))));
    reads.push(event("contentBlockStop", json!({"contentBlockIndex": 0})));
    reads.push(event("messageStop", json!({"stopReason": "end_turn"})));
    reads.push(event("metadata", json!({"usage": {"inputTokens": 112, "outputTokens": content_chunks, "totalTokens": 112 + content_chunks}, "metrics": {"latencyMs": 812}})));
    reads.into_iter().map(Bytes::from).collect()
}

/// Bedrock's event stream → OpenAI chunks, as the `bedrock` provider relays a stream (frame
/// decoding, CRC checks and translation); returns the bytes written.
fn bedrock_to_openai(reads: &[Bytes]) -> usize {
    let meta = BedrockMeta { id: "chatcmpl-x".to_owned(), created: 1_735_689_600, alias: ALIAS.to_owned() };
    let mut translate = BedrockTranslator::new(meta, KEEP_USAGE);
    let mut written = 0;
    for read in reads {
        for chunk in translate.push(read).expect("translatable") {
            written += framed(chunk);
        }
    }
    written
}

/// An Ollama `/api/chat` stream as the network delivers it: one read per NDJSON line
/// (`content_chunks` text lines, then the `done` line with the counts and durations).
fn ollama_reads(content_chunks: usize) -> Vec<Bytes> {
    let mut reads: Vec<Bytes> = (0..content_chunks)
        .map(|i| Bytes::from(format!(r#"{{"model":"llama3.2","created_at":"2026-12-07T13:18:00.{i:06}Z","message":{{"role":"assistant","content":" word{i}"}},"done":false}}"#) + "\n"))
        .collect();
    reads.push(Bytes::from(format!(
        r#"{{"model":"llama3.2","created_at":"2026-12-07T13:18:01.000000Z","message":{{"role":"assistant","content":""}},"done_reason":"stop","done":true,"total_duration":812345678,"load_duration":1234567,"prompt_eval_count":112,"prompt_eval_duration":23456789,"eval_count":{content_chunks},"eval_duration":765432109}}"#
    ) + "\n"));
    reads
}

/// Ollama's NDJSON lines → OpenAI chunks, as the `ollama` provider relays a stream (line
/// splitting and translation); returns the bytes written.
fn ollama_to_openai(reads: &[Bytes]) -> usize {
    let mut parser = NdjsonParser::new();
    let mut translate = OllamaTranslator::new(ALIAS, KEEP_USAGE);
    let mut chunks = VecDeque::new();
    let mut written = 0;
    for read in reads {
        parser.push(read);
        while let Some(line) = parser.next_line().expect("lines are small") {
            translate.on_line(&line, &mut chunks).expect("translatable");
            for chunk in chunks.drain(..) {
                if !chunk.data.is_empty() {
                    written += framed(chunk);
                }
            }
        }
    }
    written
}

/// Streams and requests translated between the two formats (the native adapters' hot path).
fn translate(c: &mut Criterion) {
    let anthropic = anthropic_reads(&fixtures::anthropic_events(50));
    let openai: Vec<Bytes> = fixtures::openai_chunks(50)
        .iter()
        .map(|p| normalize_chunk(p.as_bytes(), ALIAS, KEEP_USAGE).expect("valid chunk").data)
        .collect();
    let mut group = c.benchmark_group("sse_translate");
    group.throughput(Throughput::Elements(50));
    group.bench_function("anthropic_to_openai_50_chunks", |b| b.iter(|| anthropic_to_openai(black_box(&anthropic))));
    group.bench_function("openai_to_anthropic_50_chunks", |b| b.iter(|| openai_to_anthropic(black_box(&openai))));

    let gemini: Vec<Bytes> = fixtures::gemini_events(50).iter().map(|p| Bytes::from(format!("data: {p}\n\n"))).collect();
    group.bench_function("gemini_to_openai_50_chunks", |b| b.iter(|| gemini_to_openai(black_box(&gemini))));
    let bedrock = bedrock_reads(50);
    group.bench_function("bedrock_to_openai_50_chunks", |b| b.iter(|| bedrock_to_openai(black_box(&bedrock))));
    let ollama = ollama_reads(50);
    group.bench_function("ollama_to_openai_50_chunks", |b| b.iter(|| ollama_to_openai(black_box(&ollama))));
    group.finish();

    let to_messages = |request: &ChatCompletionRequest| to_anthropic(request, "claude-sonnet-4-5", 4096).expect("translatable");
    request_translation(c, "translate_request/openai_to_anthropic", &fixtures::chat_request(ALIAS, false), to_messages);
    request_translation(c, "translate_request/openai_to_anthropic_agent", &fixtures::agent_request(ALIAS), to_messages);
    let to_chat = |request: &MessagesRequest| to_openai(request).expect("translatable");
    request_translation(c, "translate_request/anthropic_to_openai", &fixtures::messages_request(ALIAS), to_chat);
    request_translation(c, "translate_request/anthropic_to_openai_agent", &fixtures::messages_agent_request(ALIAS), to_chat);
}

/// A request body deserialized as `In`, translated and serialized, as a translating provider
/// or ingress does it.
fn request_translation<In: DeserializeOwned, Out: Serialize>(c: &mut Criterion, name: &str, body: &str, translate: impl Fn(&In) -> Out) {
    c.bench_function(name, |b| {
        b.iter(|| {
            let request: In = serde_json::from_str(black_box(body)).expect("valid request");
            serde_json::to_vec(&translate(&request)).expect("serializable")
        })
    });
}

criterion_group! {
    name = hot_path;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = parse, route, rewrite, request_path, normalize, sse_relay, translate
}
criterion_main!(hot_path);

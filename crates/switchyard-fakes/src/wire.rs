//! The OpenAI Chat Completions wire format: completion JSON, SSE chunks and error bodies.
//!
//! Serialized through borrowed structs so fields come out in the order OpenAI sends them.

use bytes::Bytes;
use serde::Serialize;

/// The last event of a successful stream.
pub(crate) const SSE_DONE: &[u8] = b"data: [DONE]\n\n";

/// Token counts of one exchange.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: PromptTokensDetails,
    completion_tokens_details: CompletionTokensDetails,
}

impl Usage {
    pub(crate) fn new(prompt_tokens: u64, completion_tokens: u64) -> Usage {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: PromptTokensDetails::default(),
            completion_tokens_details: CompletionTokensDetails::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
struct PromptTokensDetails {
    cached_tokens: u64,
    audio_tokens: u64,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
struct CompletionTokensDetails {
    reasoning_tokens: u64,
    audio_tokens: u64,
    accepted_prediction_tokens: u64,
    rejected_prediction_tokens: u64,
}

/// Groq's `x_groq.usage`: token counts plus (made-up) timings in seconds.
#[derive(Serialize)]
struct GroqUsage {
    queue_time: f64,
    prompt_tokens: u64,
    prompt_time: f64,
    completion_tokens: u64,
    completion_time: f64,
    total_tokens: u64,
    total_time: f64,
}

impl From<&Usage> for GroqUsage {
    fn from(usage: &Usage) -> Self {
        let prompt_time = usage.prompt_tokens as f64 * 0.000_02;
        let completion_time = usage.completion_tokens as f64 * 0.004;
        GroqUsage {
            queue_time: 0.012,
            prompt_tokens: usage.prompt_tokens,
            prompt_time,
            completion_tokens: usage.completion_tokens,
            completion_time,
            total_tokens: usage.total_tokens,
            total_time: prompt_time + completion_time,
        }
    }
}

#[derive(Serialize)]
struct XGroq<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<GroqUsage>,
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [CompletionChoice<'a>; 1],
    usage: &'a Usage,
    service_tier: &'static str,
    system_fingerprint: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    x_groq: Option<XGroq<'a>>,
}

#[derive(Serialize)]
struct CompletionChoice<'a> {
    index: u32,
    message: Message<'a>,
    logprobs: (),
    finish_reason: &'a str,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
    refusal: (),
    annotations: [(); 0],
}

/// A message holding one tool call, `content: null`.
#[derive(Serialize)]
struct ToolMessage<'a> {
    role: &'static str,
    content: (),
    tool_calls: [ToolCallJson<'a>; 1],
    refusal: (),
    annotations: [(); 0],
}

#[derive(Serialize)]
struct ToolCompletionChoice<'a> {
    index: u32,
    message: ToolMessage<'a>,
    logprobs: (),
    finish_reason: &'a str,
}

#[derive(Serialize)]
struct ToolCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [ToolCompletionChoice<'a>; 1],
    usage: &'a Usage,
    service_tier: &'static str,
    system_fingerprint: &'a str,
}

/// A whole tool call (`index` only in stream deltas).
#[derive(Serialize)]
struct ToolCallJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<u32>,
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionJson<'a>,
}

#[derive(Serialize)]
struct FunctionJson<'a> {
    name: &'a str,
    arguments: &'a str,
}

/// A stream delta continuing a tool call's arguments.
#[derive(Serialize)]
struct ToolArgsDelta<'a> {
    index: u32,
    function: ArgsOnly<'a>,
}

#[derive(Serialize)]
struct ArgsOnly<'a> {
    arguments: &'a str,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    service_tier: &'static str,
    system_fingerprint: &'a str,
    choices: &'a [ChunkChoice<'a>],
    /// Absent without `include_usage`; `null` on every chunk but the usage chunk with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<&'a Usage>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    x_groq: Option<XGroq<'a>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: (),
    finish_reason: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Delta<'a> {
    Role {
        role: &'static str,
        content: &'static str,
        refusal: (),
    },
    Content {
        content: &'a str,
    },
    /// The first delta of a streamed tool call: role, `content: null`, id, type and name.
    ToolStart {
        role: &'static str,
        content: (),
        tool_calls: [ToolCallJson<'a>; 1],
        refusal: (),
    },
    ToolArgs {
        tool_calls: [ToolArgsDelta<'a>; 1],
    },
    Empty {},
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    error_type: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

fn to_vec(value: &impl Serialize, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut out, value).expect("serializing to memory cannot fail");
    out
}

/// `data: <json>\n\n`.
fn sse_event(value: &impl Serialize) -> Bytes {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"data: ");
    serde_json::to_writer(&mut out, value).expect("serializing to memory cannot fail");
    out.extend_from_slice(b"\n\n");
    out.into()
}

/// An OpenAI error body: `{"error":{"message":..,"type":..,"param":..,"code":..}}`.
pub(crate) fn error_body(
    message: &str,
    error_type: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Bytes {
    let body = ErrorBody {
        error: ErrorDetail {
            message,
            error_type,
            param,
            code,
        },
    };
    to_vec(&body, 128 + message.len()).into()
}

/// The error event a provider sends when a stream fails after it started.
pub(crate) fn sse_error(message: &str) -> Bytes {
    sse_event(&ErrorBody {
        error: ErrorDetail {
            message,
            error_type: "server_error",
            param: None,
            code: None,
        },
    })
}

/// A deterministic unit vector of `dims` dimensions for `text`.
pub(crate) fn fake_vector(text: &str, dims: usize) -> Vec<f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut v: Vec<f32> = (0..dims as u64)
        .map(|i| {
            let mut z = h ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
            z ^= z >> 33;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// Standard base64 (with padding) of the little-endian f32 bytes, as OpenAI encodes
/// `encoding_format: "base64"` embeddings.
pub(crate) fn base64_f32(values: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= chunk.len() { ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

#[derive(Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    data: Vec<EmbeddingItem>,
    model: &'a str,
    usage: EmbeddingUsage,
}

#[derive(Serialize)]
struct EmbeddingItem {
    object: &'static str,
    index: usize,
    embedding: EmbeddingValue,
}

#[derive(Serialize)]
#[serde(untagged)]
enum EmbeddingValue {
    Floats(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct EmbeddingUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// OpenAI's embeddings answer: `{"object":"list","data":[{"object":"embedding","index":0,
/// "embedding":[...]}],"model":..,"usage":{"prompt_tokens":..,"total_tokens":..}}`, pretty
/// printed with two-space indents as api.openai.com sends it.
pub(crate) fn embedding_list(model: &str, vectors: &[Vec<f32>], base64: bool, prompt_tokens: u64) -> Bytes {
    let data = vectors
        .iter()
        .enumerate()
        .map(|(index, v)| EmbeddingItem {
            object: "embedding",
            index,
            embedding: if base64 { EmbeddingValue::Base64(base64_f32(v)) } else { EmbeddingValue::Floats(v.clone()) },
        })
        .collect();
    let list = EmbeddingList { object: "list", data, model, usage: EmbeddingUsage { prompt_tokens, total_tokens: prompt_tokens } };
    serde_json::to_vec_pretty(&list).expect("serializing to memory cannot fail").into()
}

/// What every message of one response shares.
pub(crate) struct Meta<'a> {
    pub id: String,
    pub created: u64,
    pub model: &'a str,
    pub fingerprint: &'a str,
    pub finish_reason: &'a str,
    /// `Some` to emit Groq's `x_groq`.
    pub groq_id: Option<String>,
    /// Whether the request asked for `stream_options.include_usage`.
    pub include_usage: bool,
}

impl Meta<'_> {
    fn x_groq(&self, usage: Option<&Usage>) -> Option<XGroq<'_>> {
        self.groq_id.as_deref().map(|id| XGroq {
            id,
            usage: usage.map(GroqUsage::from),
        })
    }

    /// The non-streaming `chat.completion` body.
    pub(crate) fn completion(&self, content: &str, usage: &Usage) -> Bytes {
        let body = Completion {
            id: &self.id,
            object: "chat.completion",
            created: self.created,
            model: self.model,
            choices: [CompletionChoice {
                index: 0,
                message: Message {
                    role: "assistant",
                    content,
                    refusal: (),
                    annotations: [],
                },
                logprobs: (),
                finish_reason: self.finish_reason,
            }],
            usage,
            service_tier: "default",
            system_fingerprint: self.fingerprint,
            x_groq: self.x_groq(None),
        };
        to_vec(&body, 640 + content.len()).into()
    }

    fn chunk(
        &self,
        choices: &[ChunkChoice<'_>],
        usage: Option<&Usage>,
        x_groq: Option<XGroq<'_>>,
    ) -> Bytes {
        sse_event(&Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model,
            service_tier: "default",
            system_fingerprint: self.fingerprint,
            choices,
            usage: self.include_usage.then_some(usage),
            x_groq,
        })
    }

    fn choice_chunk(
        &self,
        delta: Delta<'_>,
        finish_reason: Option<&str>,
        x_groq: Option<XGroq<'_>>,
    ) -> Bytes {
        let choice = ChunkChoice {
            index: 0,
            delta,
            logprobs: (),
            finish_reason,
        };
        self.chunk(std::slice::from_ref(&choice), None, x_groq)
    }

    /// The first stream event: the assistant role and empty content.
    pub(crate) fn chunk_preamble(&self) -> Bytes {
        let delta = Delta::Role {
            role: "assistant",
            content: "",
            refusal: (),
        };
        self.choice_chunk(delta, None, self.x_groq(None))
    }

    /// A stream event carrying a piece of the content.
    pub(crate) fn chunk_content(&self, content: &str) -> Bytes {
        self.choice_chunk(Delta::Content { content }, None, None)
    }

    /// The stream event carrying `finish_reason` (and Groq's usage in `x_groq`).
    pub(crate) fn chunk_finish(&self, usage: &Usage) -> Bytes {
        self.choice_chunk(
            Delta::Empty {},
            Some(self.finish_reason),
            self.x_groq(Some(usage)),
        )
    }

    /// The non-streaming body of a tool call answer (`content: null`, one call).
    pub(crate) fn tool_completion(&self, call_id: &str, name: &str, arguments: &str, usage: &Usage) -> Bytes {
        let call = ToolCallJson { index: None, id: call_id, kind: "function", function: FunctionJson { name, arguments } };
        let body = ToolCompletion {
            id: &self.id,
            object: "chat.completion",
            created: self.created,
            model: self.model,
            choices: [ToolCompletionChoice {
                index: 0,
                message: ToolMessage { role: "assistant", content: (), tool_calls: [call], refusal: (), annotations: [] },
                logprobs: (),
                finish_reason: self.finish_reason,
            }],
            usage,
            service_tier: "default",
            system_fingerprint: self.fingerprint,
        };
        to_vec(&body, 640 + arguments.len()).into()
    }

    /// The first stream event of a tool call: role, id, type, name and empty arguments.
    pub(crate) fn chunk_tool_start(&self, call_id: &str, name: &str) -> Bytes {
        let call = ToolCallJson { index: Some(0), id: call_id, kind: "function", function: FunctionJson { name, arguments: "" } };
        self.choice_chunk(Delta::ToolStart { role: "assistant", content: (), tool_calls: [call], refusal: () }, None, None)
    }

    /// A stream event carrying a piece of a tool call's arguments.
    pub(crate) fn chunk_tool_args(&self, arguments: &str) -> Bytes {
        self.choice_chunk(Delta::ToolArgs { tool_calls: [ToolArgsDelta { index: 0, function: ArgsOnly { arguments } }] }, None, None)
    }

    /// The `include_usage` event: no choices, the usage of the whole exchange.
    pub(crate) fn chunk_usage(&self, usage: &Usage) -> Bytes {
        self.chunk(&[], Some(usage), None)
    }
}

/// The body of `GET /v1/models`.
pub(crate) fn models_body() -> Bytes {
    #[derive(Serialize)]
    struct Model {
        id: &'static str,
        object: &'static str,
        created: u64,
        owned_by: &'static str,
    }
    #[derive(Serialize)]
    struct List {
        object: &'static str,
        data: [Model; 3],
    }
    let model = |id, created, owned_by| Model {
        id,
        object: "model",
        created,
        owned_by,
    };
    let list = List {
        object: "list",
        data: [
            model("gpt-4o-mini", 1_721_172_741, "system"),
            model("gpt-4o", 1_715_367_049, "system"),
            model("llama-3.3-70b-versatile", 1_733_447_754, "Meta"),
        ],
    };
    to_vec(&list, 512).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(groq: bool, include_usage: bool) -> Meta<'static> {
        Meta {
            id: "chatcmpl-1".into(),
            created: 7,
            model: "m",
            fingerprint: "fp_1",
            finish_reason: "stop",
            groq_id: groq.then(|| "req_1".to_owned()),
            include_usage,
        }
    }

    fn text(bytes: Bytes) -> String {
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn completion_bytes() {
        let usage = Usage::new(3, 2);
        assert_eq!(
            text(meta(false, false).completion("Hi \"you\"", &usage)),
            r#"{"id":"chatcmpl-1","object":"chat.completion","created":7,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hi \"you\"","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_1"}"#
        );
        assert!(
            text(meta(true, false).completion("", &usage))
                .ends_with(r#","x_groq":{"id":"req_1"}}"#)
        );
    }

    #[test]
    fn chunk_bytes() {
        let m = meta(false, true);
        let head = r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":7,"model":"m","service_tier":"default","system_fingerprint":"fp_1","choices":"#;
        assert_eq!(
            text(m.chunk_preamble()),
            format!(
                "{head}{}\n\n",
                r#"[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#
            )
        );
        assert_eq!(
            text(m.chunk_content("a ")),
            format!(
                "{head}{}\n\n",
                r#"[{"index":0,"delta":{"content":"a "},"logprobs":null,"finish_reason":null}],"usage":null}"#
            )
        );
        let usage = Usage::new(1, 1);
        assert_eq!(
            text(m.chunk_finish(&usage)),
            format!(
                "{head}{}\n\n",
                r#"[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}"#
            )
        );
        assert!(text(m.chunk_usage(&usage)).starts_with(&format!(
            "{head}{}",
            r#"[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2,"#
        )));
        // Without include_usage there is no "usage" key at all.
        assert!(!text(meta(false, false).chunk_content("a")).contains("usage"));
        let groq_finish = text(meta(true, false).chunk_finish(&usage));
        assert!(groq_finish.contains(r#""x_groq":{"id":"req_1","usage":{"queue_time":"#));
    }

    #[test]
    fn embedding_lists() {
        assert_eq!(base64_f32(&[1.0, 2.0]), "AACAPwAAAEA=");
        let v = fake_vector("hello", 16);
        assert_eq!(v, fake_vector("hello", 16));
        assert_ne!(v, fake_vector("hellp", 16));
        assert!((v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-4);
        let body: serde_json::Value = serde_json::from_slice(&embedding_list("m", &[vec![1.0]], true, 3)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": "AACAPw=="}],
                "model": "m", "usage": {"prompt_tokens": 3, "total_tokens": 3}})
        );
    }

    #[test]
    fn error_bytes() {
        assert_eq!(
            text(error_body("boom", "server_error", None, Some("c"))),
            r#"{"error":{"message":"boom","type":"server_error","param":null,"code":"c"}}"#
        );
        assert_eq!(
            text(sse_error("boom")),
            "data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n"
        );
    }
}

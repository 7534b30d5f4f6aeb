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

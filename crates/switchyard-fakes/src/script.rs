//! What the fake upstream does with each chat request.

use std::collections::VecDeque;
use std::time::Duration;

/// The reply of [`Step::ok`].
pub(crate) const DEFAULT_REPLY: &str = "Hello from the fake upstream.";

/// The behaviour of a [`FakeUpstream`](crate::FakeUpstream): a queue of [`Step`]s used one per
/// chat request in order, then the default step for every later request, plus wire-format
/// options.
#[derive(Clone, Debug)]
pub struct Script {
    pub(crate) queue: VecDeque<Step>,
    pub(crate) default: Step,
    pub(crate) x_groq: bool,
    pub(crate) finish_reason: String,
    pub(crate) record: bool,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            queue: VecDeque::new(),
            default: Step::ok(),
            x_groq: false,
            finish_reason: "stop".to_owned(),
            record: true,
        }
    }
}

impl Script {
    /// An empty queue with [`Step::ok`] as the default step.
    pub fn new() -> Script {
        Script::default()
    }

    /// Appends `step` to the queue.
    pub fn then(mut self, step: Step) -> Script {
        self.queue.push_back(step);
        self
    }

    /// Appends `n` copies of `step` to the queue.
    pub fn times(mut self, n: usize, step: Step) -> Script {
        self.queue.extend(std::iter::repeat_n(step, n));
        self
    }

    /// Sets the step used once the queue is exhausted.
    pub fn default_step(mut self, step: Step) -> Script {
        self.default = step;
        self
    }

    /// Groq's quirks: a non-standard top-level `x_groq` object (see [`Script::x_groq`]) and
    /// `finish_reason: "eos"` instead of `"stop"`. `false` restores OpenAI's behaviour.
    pub fn groq_quirks(self, on: bool) -> Script {
        self.x_groq(on)
            .finish_reason(if on { "eos" } else { "stop" })
    }

    /// Emits Groq's `"x_groq":{"id":"req_..."}` on completions and on the first stream chunk,
    /// and `"x_groq":{"id":..,"usage":{..}}` on the stream chunk carrying `finish_reason`.
    pub fn x_groq(mut self, on: bool) -> Script {
        self.x_groq = on;
        self
    }

    /// The `finish_reason` of successful answers (`"stop"` by default).
    pub fn finish_reason(mut self, reason: impl Into<String>) -> Script {
        self.finish_reason = reason.into();
        self
    }

    /// Whether to keep chat requests for [`FakeUpstream::recorded`](crate::FakeUpstream::recorded)
    /// (on by default; benchmarks may turn it off to save the work).
    pub fn record(mut self, on: bool) -> Script {
        self.record = on;
        self
    }
}

/// One scripted answer to a chat request.
///
/// The `*After` and `PreambleThenError` steps are defined for streaming requests; on a
/// non-streaming request they degrade to the closest equivalent: `PreambleThenError` answers
/// 500 `server_error` with its message, while `DropAfter` and `StallAfter` send 200 headers and
/// the first half of the JSON body (with a `content-length` for the whole), then abort or stall.
#[derive(Clone, Debug)]
pub enum Step {
    /// Normal answer. Honours the request's `stream` flag: a JSON completion, or an SSE stream
    /// of `chunks` content chunks (at most one per word of the reply), each sent `chunk_delay`
    /// after the previous one. A non-streaming answer waits as long as the stream would have
    /// taken before sending anything.
    Ok {
        reply: Reply,
        chunks: usize,
        chunk_delay: Duration,
    },
    /// HTTP error status with an OpenAI-style error JSON body and optional `retry-after`
    /// (seconds) / `retry-after-ms` headers.
    Status {
        code: u16,
        message: String,
        error_type: String,
        error_code: Option<String>,
        retry_after: Option<String>,
        retry_after_ms: Option<String>,
    },
    /// Sleeps, then performs the inner step (the sleep counts as waiting for response headers).
    Delay(Duration, Box<Step>),
    /// Closes the TCP connection (with a reset) without sending any response.
    Reset,
    /// Never answers, until the client goes away (which counts in
    /// [`cancelled`](crate::FakeUpstream::cancelled)).
    Hang,
    /// Streaming: 200, the role-only preamble chunk, then an error event
    /// `data: {"error":{"message":..,"type":"server_error","param":null,"code":null}}` and the
    /// end of the stream (no `[DONE]`).
    PreambleThenError { message: String },
    /// Streaming: 200, the preamble and `after` content chunks, then an error event (as in
    /// [`Step::PreambleThenError`]) and the end of the stream. Non-streaming: 500 with the message.
    ErrorAfter { after: usize, message: String },
    /// Streaming: 200, the preamble and `after` content chunks, then the connection is aborted
    /// mid-body (no finish chunk, no `[DONE]`).
    DropAfter { after: usize },
    /// Streaming: 200, the preamble and `after` content chunks, then nothing more while the
    /// connection stays open (for idle timeouts); counts as cancelled when the client goes away.
    StallAfter { after: usize },
}

impl Step {
    /// A normal answer: [`Reply::Fixed`]`("Hello from the fake upstream.")`, 5 chunks, no delay.
    pub fn ok() -> Step {
        Step::reply(DEFAULT_REPLY)
    }

    /// A normal answer with the given text, 5 chunks, no delay.
    pub fn reply(text: impl Into<String>) -> Step {
        Step::Ok {
            reply: Reply::Fixed(text.into()),
            chunks: 5,
            chunk_delay: Duration::ZERO,
        }
    }

    /// A normal answer echoing the last user message, 5 chunks, no delay.
    pub fn echo() -> Step {
        Step::Ok {
            reply: Reply::Echo,
            chunks: 5,
            chunk_delay: Duration::ZERO,
        }
    }

    /// An error status with the message, type and code OpenAI sends for it.
    pub fn status(code: u16) -> Step {
        let (message, error_type, error_code) = match code {
            400 => ("Invalid request.", "invalid_request_error", None),
            401 => (
                "Incorrect API key provided: sk-fake. You can find your API key at https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                Some("invalid_api_key"),
            ),
            403 => (
                "You are not allowed to sample from this model.",
                "invalid_request_error",
                None,
            ),
            404 => (
                "The model does not exist or you do not have access to it.",
                "invalid_request_error",
                Some("model_not_found"),
            ),
            408 => ("Request timed out.", "timeout", None),
            413 => ("Request too large.", "invalid_request_error", None),
            429 => (
                "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s.",
                "requests",
                Some("rate_limit_exceeded"),
            ),
            500 => (
                "The server had an error while processing your request. Sorry about that!",
                "server_error",
                None,
            ),
            502 => ("Bad gateway.", "server_error", None),
            503 => (
                "The engine is currently overloaded, please try again later.",
                "server_error",
                None,
            ),
            504 => ("Gateway timeout.", "server_error", None),
            _ if code >= 500 => ("The server had an error.", "server_error", None),
            _ => ("The request failed.", "invalid_request_error", None),
        };
        Step::Status {
            code,
            message: message.to_owned(),
            error_type: error_type.to_owned(),
            error_code: error_code.map(str::to_owned),
            retry_after: None,
            retry_after_ms: None,
        }
    }

    /// 429 `rate_limit_exceeded` with a `retry-after` header of `retry_after_secs`.
    pub fn rate_limited(retry_after_secs: &str) -> Step {
        match Step::status(429) {
            Step::Status {
                code,
                message,
                error_type,
                error_code,
                retry_after_ms,
                ..
            } => Step::Status {
                code,
                message,
                error_type,
                error_code,
                retry_after: Some(retry_after_secs.to_owned()),
                retry_after_ms,
            },
            other => other,
        }
    }

    /// 400 `context_length_exceeded`, as OpenAI answers an over-long prompt.
    pub fn context_length() -> Step {
        Step::Status {
            code: 400,
            message: "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens. Please reduce the length of the messages.".to_owned(),
            error_type: "invalid_request_error".to_owned(),
            error_code: Some("context_length_exceeded".to_owned()),
            retry_after: None,
            retry_after_ms: None,
        }
    }

    /// This step, performed after a delay of `d` (see [`Step::Delay`]).
    pub fn delayed(self, d: Duration) -> Step {
        Step::Delay(d, Box::new(self))
    }

    /// Whether performing this step needs the text of the request's last user message.
    pub(crate) fn needs_echo(&self) -> bool {
        match self {
            Step::Ok { reply, .. } => matches!(reply, Reply::Echo),
            Step::Delay(_, inner) => inner.needs_echo(),
            _ => false,
        }
    }
}

/// The text of a normal answer.
#[derive(Clone, Debug)]
pub enum Reply {
    /// This text.
    Fixed(String),
    /// The text of the last user message (string content, or its text parts concatenated).
    Echo,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_builders() {
        let script = Script::new()
            .then(Step::status(500))
            .times(2, Step::Reset)
            .default_step(Step::echo())
            .groq_quirks(true);
        assert_eq!(script.queue.len(), 3);
        assert!(matches!(script.queue[1], Step::Reset));
        assert!(script.default.needs_echo());
        assert!(script.x_groq);
        assert_eq!(script.finish_reason, "eos");
        assert_eq!(script.groq_quirks(false).finish_reason, "stop");
    }

    #[test]
    fn step_helpers() {
        match Step::rate_limited("7") {
            Step::Status {
                code,
                error_type,
                error_code,
                retry_after,
                ..
            } => {
                assert_eq!(code, 429);
                assert_eq!(error_type, "requests");
                assert_eq!(error_code.as_deref(), Some("rate_limit_exceeded"));
                assert_eq!(retry_after.as_deref(), Some("7"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(Step::echo().delayed(Duration::from_millis(1)).needs_echo());
        assert!(!Step::ok().needs_echo());
    }
}

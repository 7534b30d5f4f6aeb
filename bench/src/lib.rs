//! Switchyard's benchmark harness.
//!
//! - `loadgen` (src/bin/loadgen.rs): an HTTP/1.1 load generator on hyper, fixed-concurrency and
//!   fixed-rate (coordinated-omission-corrected) modes, JSON and SSE, HdrHistogram latencies.
//! - `benches/hot_path.rs`: criterion micro-benchmarks of the request path that touches no
//!   network (parse, route, rewrite, normalize, SSE relay).
//! - `run.py`: the one-command runner that starts the fake upstreams, nginx, Switchyard and the
//!   peer gateways and writes `results/latest.{md,json}`.
//!
//! This library holds the request and response bodies both use, so the load generator and the
//! micro-benchmarks measure the same shapes.

pub mod fixtures {
    //! Realistic OpenAI-format bodies.

    /// The system prompt of the typical request.
    pub const SYSTEM_PROMPT: &str = "You are a helpful assistant for an e-commerce support team. \
Answer in the customer's language, keep answers under 120 words, never invent order numbers, \
and ask for the order id when it is needed.";

    /// The user message of the typical request.
    pub const USER_MESSAGE: &str = "Hi! I ordered a pair of running shoes last Tuesday and the \
tracking page still says 'label created'. Can you tell me whether the parcel has actually \
shipped and what I can do if it does not arrive before the weekend?";

    /// Appends `s` as a JSON string literal (with quotes) to `out`.
    pub fn push_json_str(out: &mut String, s: &str) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
    }

    /// A typical chat request: a system and a user message (~600 bytes), the usual sampling
    /// parameters, `model` set to `model`.
    pub fn chat_request(model: &str, stream: bool) -> String {
        let mut out = String::with_capacity(768);
        out.push_str("{\"model\":");
        push_json_str(&mut out, model);
        out.push_str(",\"messages\":[{\"role\":\"system\",\"content\":");
        push_json_str(&mut out, SYSTEM_PROMPT);
        out.push_str("},{\"role\":\"user\",\"content\":");
        push_json_str(&mut out, USER_MESSAGE);
        out.push_str(
            "}],\"temperature\":0.7,\"top_p\":1,\"max_tokens\":256,\"user\":\"bench-user-42\"",
        );
        if stream {
            out.push_str(",\"stream\":true");
        } else {
            out.push_str(",\"stream\":false");
        }
        out.push('}');
        out
    }

    /// An agent's turn (~1.3 KiB): a multi-line system prompt, a user message in content parts
    /// with an image, the assistant's tool call, the tool's result, and a tool definition.
    pub fn agent_request(model: &str) -> String {
        let mut out = String::with_capacity(1536);
        out.push_str("{\"model\":");
        push_json_str(&mut out, model);
        out.push_str(",\"messages\":[{\"role\":\"system\",\"content\":");
        push_json_str(&mut out, &format!("{SYSTEM_PROMPT}\nTools: use lookup_order for anything about an order.\n\t- never guess"));
        out.push_str("},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":");
        push_json_str(&mut out, USER_MESSAGE);
        out.push_str(
            "},{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://example.com/receipt.png\",\"detail\":\"low\"}}]},\
             {\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_8f2a\",\"type\":\"function\",\
             \"function\":{\"name\":\"lookup_order\",\"arguments\":\"{\\\"order_id\\\":\\\"A-1042\\\"}\"}}]},\
             {\"role\":\"tool\",\"tool_call_id\":\"call_8f2a\",\"content\":\"{\\\"status\\\":\\\"label created\\\",\\\"carrier\\\":\\\"DHL\\\"}\"}],\
             \"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"lookup_order\",\"description\":\"Look up an order by id\",\
             \"parameters\":{\"type\":\"object\",\"properties\":{\"order_id\":{\"type\":\"string\"}},\"required\":[\"order_id\"]}}}],\
             \"tool_choice\":\"auto\",\"temperature\":0.2,\"max_tokens\":512,\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
        );
        out
    }

    /// The typical request of [`chat_request`] as Anthropic's Messages body (non-streamed).
    pub fn messages_request(model: &str) -> String {
        let mut out = String::with_capacity(768);
        out.push_str("{\"model\":");
        push_json_str(&mut out, model);
        out.push_str(",\"system\":");
        push_json_str(&mut out, SYSTEM_PROMPT);
        out.push_str(",\"messages\":[{\"role\":\"user\",\"content\":");
        push_json_str(&mut out, USER_MESSAGE);
        out.push_str("}],\"max_tokens\":256,\"temperature\":0.7,\"top_p\":1,\"metadata\":{\"user_id\":\"bench-user-42\"}}");
        out
    }

    /// The agent's turn of [`agent_request`] as Anthropic's Messages body: content blocks (text
    /// and an image; text and a tool use; a tool result), a tool definition.
    pub fn messages_agent_request(model: &str) -> String {
        let mut out = String::with_capacity(1536);
        out.push_str("{\"model\":");
        push_json_str(&mut out, model);
        out.push_str(",\"system\":");
        push_json_str(&mut out, &format!("{SYSTEM_PROMPT}\nTools: use lookup_order for anything about an order.\n\t- never guess"));
        out.push_str(",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":");
        push_json_str(&mut out, USER_MESSAGE);
        out.push_str(
            "},{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":\"https://example.com/receipt.png\"}}]},\
             {\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"Let me look that up.\"},\
             {\"type\":\"tool_use\",\"id\":\"toolu_8f2a\",\"name\":\"lookup_order\",\"input\":{\"order_id\":\"A-1042\"}}]},\
             {\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_8f2a\",\"content\":\"{\\\"status\\\":\\\"label created\\\",\\\"carrier\\\":\\\"DHL\\\"}\"}]}],\
             \"tools\":[{\"name\":\"lookup_order\",\"description\":\"Look up an order by id\",\
             \"input_schema\":{\"type\":\"object\",\"properties\":{\"order_id\":{\"type\":\"string\"}},\"required\":[\"order_id\"]}}],\
             \"tool_choice\":{\"type\":\"auto\"},\"temperature\":0.2,\"max_tokens\":512,\"stream\":true}",
        );
        out
    }

    /// A long conversation of `messages` messages: a system message, then alternating user and
    /// assistant turns (~24 KiB for 100 messages), plus a tool definition, as agent frameworks
    /// send.
    pub fn large_chat_request(model: &str, messages: usize) -> String {
        let mut out = String::with_capacity(340 * messages + 1024);
        out.push_str("{\"model\":");
        push_json_str(&mut out, model);
        out.push_str(",\"messages\":[{\"role\":\"system\",\"content\":");
        push_json_str(&mut out, SYSTEM_PROMPT);
        out.push('}');
        for i in 1..messages.max(1) {
            if i % 2 == 1 {
                out.push_str(",{\"role\":\"user\",\"content\":");
                push_json_str(&mut out, &format!("Question {i}: {USER_MESSAGE}"));
            } else {
                out.push_str(",{\"role\":\"assistant\",\"content\":");
                push_json_str(
                    &mut out,
                    &format!(
                        "Answer {i}: thanks for waiting. The carrier scanned the parcel at the \
                         regional hub this morning, so it is on its way.\nEstimated delivery: \
                         Friday. \"Label created\" pages can lag by up to 24 hours."
                    ),
                );
            }
            out.push('}');
        }
        out.push_str("],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"lookup_order\",\"description\":\"Look up an order by id\",\"parameters\":{\"type\":\"object\",\"properties\":{\"order_id\":{\"type\":\"string\"}},\"required\":[\"order_id\"]}}}],\"temperature\":0.2,\"stream\":false}");
        out
    }

    /// A `chat.completion` body as OpenAI sends it.
    pub fn openai_completion() -> String {
        r#"{"id":"chatcmpl-BfX5kZ7zQm3b1Yd8c2XwqLrT9sPaE","object":"chat.completion","created":1735689600,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Thanks for reaching out! A \"label created\" status usually means the carrier has not scanned the parcel yet. It normally updates within 24 hours of pickup. If it has not moved by tomorrow evening, reply with your order id and I will open a trace with the carrier and, if needed, send a replacement by express delivery so it arrives before the weekend.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":112,"completion_tokens":74,"total_tokens":186,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_b8bc95a0ac"}"#.to_owned()
    }

    /// A `chat.completion` body as Groq sends it (`x_groq`, timings in `usage`).
    pub fn groq_completion() -> String {
        r#"{"id":"chatcmpl-5b1f0f0e-6a4c-4bb7-9a54-3f8a2f1d2c11","object":"chat.completion","created":1735689600,"model":"llama-3.1-8b-instant","choices":[{"index":0,"message":{"role":"assistant","content":"Thanks for reaching out! A \"label created\" status usually means the carrier has not scanned the parcel yet. It normally updates within 24 hours of pickup. If it has not moved by tomorrow evening, reply with your order id and I will open a trace with the carrier."},"logprobs":null,"finish_reason":"stop"}],"usage":{"queue_time":0.018,"prompt_tokens":112,"prompt_time":0.0042,"completion_tokens":61,"completion_time":0.081,"total_tokens":173,"total_time":0.0852},"system_fingerprint":"fp_a4265e44d5","x_groq":{"id":"req_01jh3k4m5n6p7q8r9s0t1v2w3x"}}"#.to_owned()
    }

    /// The `data:` payloads of a streamed completion as OpenAI sends it: a role preamble,
    /// `content_chunks` content deltas, a finish chunk (no `[DONE]`).
    pub fn openai_chunks(content_chunks: usize) -> Vec<String> {
        let head = r#"{"id":"chatcmpl-BfX5kZ7zQm3b1Yd8c2XwqLrT9sPaE","object":"chat.completion.chunk","created":1735689600,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_b8bc95a0ac","choices":"#;
        let mut out = Vec::with_capacity(content_chunks + 2);
        out.push(format!(
            r#"{head}[{{"index":0,"delta":{{"role":"assistant","content":"","refusal":null}},"logprobs":null,"finish_reason":null}}]}}"#
        ));
        for i in 0..content_chunks {
            out.push(format!(
                r#"{head}[{{"index":0,"delta":{{"content":" word{i}"}},"logprobs":null,"finish_reason":null}}]}}"#
            ));
        }
        out.push(format!(
            r#"{head}[{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"stop"}}]}}"#
        ));
        out
    }

    /// The `data:` payloads of a streamed completion as Groq sends it (`x_groq` on the first
    /// and last chunk, usage in `x_groq.usage`).
    pub fn groq_chunks(content_chunks: usize) -> Vec<String> {
        let head = r#"{"id":"chatcmpl-5b1f0f0e-6a4c-4bb7-9a54-3f8a2f1d2c11","object":"chat.completion.chunk","created":1735689600,"model":"llama-3.1-8b-instant","system_fingerprint":"fp_a4265e44d5","choices":"#;
        let mut out = Vec::with_capacity(content_chunks + 2);
        out.push(format!(
            r#"{head}[{{"index":0,"delta":{{"role":"assistant","content":""}},"logprobs":null,"finish_reason":null}}],"x_groq":{{"id":"req_01jh3k4m5n6p7q8r9s0t1v2w3x"}}}}"#
        ));
        for i in 0..content_chunks {
            out.push(format!(
                r#"{head}[{{"index":0,"delta":{{"content":" word{i}"}},"logprobs":null,"finish_reason":null}}]}}"#
            ));
        }
        out.push(format!(
            r#"{head}[{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"stop"}}],"x_groq":{{"id":"req_01jh3k4m5n6p7q8r9s0t1v2w3x","usage":{{"queue_time":0.018,"prompt_tokens":112,"prompt_time":0.0042,"completion_tokens":{content_chunks},"completion_time":0.081,"total_tokens":173,"total_time":0.0852}}}}}}"#
        ));
        out
    }

    /// The events of a streamed answer as Anthropic's Messages API sends them (name, `data:`
    /// JSON): `message_start`, a text block with `content_chunks` `text_delta`s, its stop, the
    /// `message_delta` with the stop reason and usage, `message_stop` (after Anthropic's
    /// streaming reference, as in `crates/switchyard-fakes/fixtures/anthropic/stream_text.sse`).
    pub fn anthropic_events(content_chunks: usize) -> Vec<(&'static str, String)> {
        let mut out = vec![
            ("message_start", r#"{"type":"message_start","message":{"id":"msg_01FdJXtLCW1NHmdNNgUT9Y5w","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":112,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1,"service_tier":"standard"}}}"#.to_owned()),
            ("content_block_start", r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#.to_owned()),
            ("ping", r#"{"type": "ping"}"#.to_owned()),
        ];
        for i in 0..content_chunks {
            out.push(("content_block_delta", format!(r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":" word{i}"}}}}"#)));
        }
        out.push(("content_block_stop", r#"{"type":"content_block_stop","index":0}"#.to_owned()));
        out.push(("message_delta", format!(r#"{{"type":"message_delta","delta":{{"stop_reason":"end_turn","stop_sequence":null}},"usage":{{"output_tokens":{content_chunks}}}}}"#)));
        out.push(("message_stop", r#"{"type":"message_stop"}"#.to_owned()));
        out
    }

    /// The `data:` payloads of a streamed answer as Gemini's `streamGenerateContent?alt=sse`
    /// sends them: one `GenerateContentResponse` per text piece, each with the usage so far,
    /// the last with `finishReason` (as in `crates/switchyard-fakes/fixtures/gemini/stream.sse`).
    pub fn gemini_events(content_chunks: usize) -> Vec<String> {
        (0..content_chunks)
            .map(|i| {
                let finish = if i + 1 == content_chunks { r#","finishReason":"STOP""# } else { "" };
                format!(
                    r#"{{"candidates":[{{"content":{{"parts":[{{"text":" word{i}"}}],"role":"model"}}{finish},"index":0}}],"usageMetadata":{{"promptTokenCount":112,"candidatesTokenCount":{n},"totalTokenCount":{t},"promptTokensDetails":[{{"modality":"TEXT","tokenCount":112}}]}},"modelVersion":"gemini-2.5-flash","responseId":"Zq9JaKv3Ka6F1dkP9p2rwAQ"}}"#,
                    n = i + 1,
                    t = 113 + i
                )
            })
            .collect()
    }

    /// The bytes of an SSE stream carrying `events` (name, data), as Anthropic frames them.
    pub fn named_sse_stream(events: &[(&str, String)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, data) in events {
            out.extend_from_slice(b"event: ");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\ndata: ");
            out.extend_from_slice(data.as_bytes());
            out.extend_from_slice(b"\n\n");
        }
        out
    }

    /// The bytes of an SSE stream carrying `payloads` as `data:` events, then `[DONE]`.
    pub fn sse_stream(payloads: &[String]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(p.as_bytes());
            out.extend_from_slice(b"\n\n");
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        out
    }
}

pub mod sse {
    //! The load generator's SSE accounting: just enough to timestamp content events.

    /// What one `data:` event is.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum EventKind {
        /// `[DONE]`.
        Done,
        /// A chunk whose delta carries non-empty `content`.
        Content,
        /// `{"error": ...}`.
        Error,
        /// Anything else (role preamble, finish chunk, usage chunk, comments).
        Other,
    }

    /// Classifies one event's `data:` payload without parsing JSON: a content event has a
    /// `"content":"` followed by at least one character before the closing quote.
    pub fn classify(data: &[u8]) -> EventKind {
        let data = trim(data);
        if data == b"[DONE]" {
            return EventKind::Done;
        }
        if data.starts_with(b"{\"error\"") {
            return EventKind::Error;
        }
        const KEY: &[u8] = b"\"content\":";
        let mut rest = data;
        while let Some(at) = find(rest, KEY) {
            let mut after = &rest[at + KEY.len()..];
            while let [b' ', tail @ ..] = after {
                after = tail;
            }
            if let [b'"', next, ..] = after {
                if *next != b'"' {
                    return EventKind::Content;
                }
            }
            rest = after;
        }
        EventKind::Other
    }

    /// The send time stamped in a chunk by `switchyard-fake-upstream --stamp-chunks`
    /// (`"system_fingerprint":"fp_t<nanoseconds since the Unix epoch, 19 digits>"`).
    pub fn stamp(data: &[u8]) -> Option<u64> {
        const KEY: &[u8] = b"\"system_fingerprint\":\"fp_t";
        let at = find(data, KEY)? + KEY.len();
        let digits = data.get(at..at + 19)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    }

    fn trim(mut s: &[u8]) -> &[u8] {
        while let [b' ' | b'\r' | b'\n', tail @ ..] = s {
            s = tail;
        }
        while let [head @ .., b' ' | b'\r' | b'\n'] = s {
            s = head;
        }
        s
    }

    /// The first index of `needle` in `haystack`.
    pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        if needle.is_empty() || haystack.len() < needle.len() {
            return None;
        }
        haystack.windows(needle.len()).position(|w| w == needle)
    }

    /// Splits complete SSE events off the front of `buf`, calling `on_data` with each event's
    /// (first) `data:` payload. Returns the number of bytes consumed. Accepts `\n\n` and
    /// `\r\n\r\n` separators.
    pub fn drain_events(buf: &[u8], mut on_data: impl FnMut(&[u8])) -> usize {
        let mut consumed = 0;
        loop {
            let rest = &buf[consumed..];
            let (end, sep) = match (find(rest, b"\n\n"), find(rest, b"\r\n\r\n")) {
                (Some(a), Some(b)) if b < a => (b, 4),
                (Some(a), _) => (a, 2),
                (None, Some(b)) => (b, 4),
                (None, None) => return consumed,
            };
            let event = &rest[..end];
            for line in event.split(|&b| b == b'\n') {
                if let Some(data) = line.strip_prefix(b"data:") {
                    on_data(data);
                }
            }
            consumed += end + sep;
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn classifies_events() {
            assert_eq!(classify(b" [DONE]"), EventKind::Done);
            assert_eq!(
                classify(br#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#),
                EventKind::Other
            );
            assert_eq!(
                classify(br#"{"choices":[{"delta":{"content":"hi"}}]}"#),
                EventKind::Content
            );
            assert_eq!(
                classify(br#"{"choices":[{"delta":{"content": "hi"}}]}"#),
                EventKind::Content
            );
            assert_eq!(classify(br#"{"error":{"message":"x"}}"#), EventKind::Error);
            assert_eq!(
                classify(br#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#),
                EventKind::Other
            );
        }

        #[test]
        fn reads_send_stamps() {
            let chunk = br#"{"id":"c","system_fingerprint":"fp_t1796173396701888000","choices":[]}"#;
            assert_eq!(stamp(chunk), Some(1_796_173_396_701_888_000));
            assert_eq!(stamp(br#"{"system_fingerprint":"fp_b8bc95a0ac"}"#), None);
            assert_eq!(stamp(br#"{"system_fingerprint":"fp_t12"}"#), None);
        }

        #[test]
        fn drains_complete_events() {
            let mut seen = Vec::new();
            let buf = b"data: a\n\ndata: b\r\n\r\ndata: c";
            let n = drain_events(buf, |d| seen.push(d.to_vec()));
            assert_eq!(seen, vec![b" a".to_vec(), b" b".to_vec()]);
            assert_eq!(&buf[n..], b"data: c");
        }
    }
}

use serde_json::{Value, json};

use super::eventstream::encode;
use super::stream::{StreamError, StreamTranslator};
use crate::wire::chunk::Chunk;
use super::*;

fn req(v: Value) -> ChatCompletionRequest {
    serde_json::from_value(v).unwrap()
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/../switchyard-fakes/fixtures/bedrock/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn meta() -> AnswerMeta {
    AnswerMeta { id: "chatcmpl-x".into(), created: 1, alias: "chat".into() }
}

#[test]
fn requests_translate_to_converse() {
    let r = req(json!({
        "model": "chat", "max_tokens": 256, "temperature": 0.3, "top_p": 0.9, "stop": "END",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "developer", "content": [{"type": "text", "text": "no emoji"}]},
            {"role": "user", "content": [{"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}}]},
            {"role": "assistant", "content": "Let me look.", "tool_calls": [
                {"id": "tooluse_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"cat\"}"}},
                {"id": "tooluse_2", "type": "function", "function": {"name": "lookup", "arguments": ""}}]},
            {"role": "tool", "tool_call_id": "tooluse_1", "content": "{\"animal\":\"cat\"}"},
            {"role": "tool", "tool_call_id": "tooluse_2", "content": "not found"},
            {"role": "user", "content": "thanks"}
        ],
        "tools": [{"type": "function", "function": {"name": "lookup", "description": "Looks things up",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}],
        "tool_choice": {"type": "function", "function": {"name": "lookup"}}
    }));
    let out = to_converse(&r).unwrap();
    assert_eq!(
        out,
        json!({
            "system": [{"text": "be brief"}, {"text": "no emoji"}],
            "messages": [
                {"role": "user", "content": [{"text": "what is this?"},
                    {"image": {"format": "jpeg", "source": {"bytes": "/9j/4AAQ"}}}]},
                {"role": "assistant", "content": [{"text": "Let me look."},
                    {"toolUse": {"toolUseId": "tooluse_1", "name": "lookup", "input": {"q": "cat"}}},
                    {"toolUse": {"toolUseId": "tooluse_2", "name": "lookup", "input": {}}}]},
                {"role": "user", "content": [
                    {"toolResult": {"toolUseId": "tooluse_1", "content": [{"json": {"animal": "cat"}}]}},
                    {"toolResult": {"toolUseId": "tooluse_2", "content": [{"text": "not found"}]}},
                    {"text": "thanks"}]}
            ],
            "toolConfig": {
                "tools": [{"toolSpec": {"name": "lookup", "description": "Looks things up",
                    "inputSchema": {"json": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}}],
                "toolChoice": {"tool": {"name": "lookup"}}
            },
            "inferenceConfig": {"maxTokens": 256, "temperature": 0.3, "topP": 0.9, "stopSequences": ["END"]}
        })
    );
}

#[test]
fn tool_choice_modes() {
    let base = |choice: Value| {
        let mut v = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f"}}]});
        if !choice.is_null() {
            v["tool_choice"] = choice;
        }
        to_converse(&req(v)).unwrap()
    };
    assert_eq!(base(json!("auto"))["toolConfig"]["toolChoice"], json!({"auto": {}}));
    assert_eq!(base(json!("required"))["toolConfig"]["toolChoice"], json!({"any": {}}));
    assert_eq!(base(Value::Null)["toolConfig"]["toolChoice"], Value::Null);
    assert_eq!(base(Value::Null)["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"], json!({"json": {"type": "object", "properties": {}}}));
    assert_eq!(base(json!("none")).get("toolConfig"), None, "none leaves the tools out");
    // ...unless the history holds tool blocks, which Bedrock accepts only with a toolConfig.
    let v = json!({"model": "m", "tool_choice": "none", "tools": [{"type": "function", "function": {"name": "f"}}], "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "ok"}]});
    let out = to_converse(&req(v)).unwrap();
    assert_eq!(out["toolConfig"]["tools"][0]["toolSpec"]["name"], "f");
    assert_eq!(out["toolConfig"].get("toolChoice"), None);
}

#[test]
fn what_bedrock_cannot_take_is_unsupported_or_invalid() {
    let one = |content: Value| to_converse(&req(json!({"model": "m", "messages": [{"role": "user", "content": content}]})));
    assert!(matches!(one(json!([{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}])), Err(TranslateError::Unsupported(m)) if m.contains("https")));
    assert!(matches!(one(json!([{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}])), Err(TranslateError::Unsupported(_))));
    assert!(matches!(one(json!([{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}])), Err(TranslateError::Unsupported(_))));
    assert!(matches!(one(json!([{"type": "file", "file": {"file_id": "file-1"}}])), Err(TranslateError::Unsupported(_))));
    let pdf = one(json!([{"type": "file", "file": {"filename": "Q3 report_final.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}])).unwrap();
    assert_eq!(pdf["messages"][0]["content"][0], json!({"document": {"format": "pdf", "name": "Q3 report final", "source": {"bytes": "JVBERi0="}}}));
    let n2 = to_converse(&req(json!({"model": "m", "n": 2, "messages": [{"role": "user", "content": "hi"}]})));
    assert!(matches!(n2, Err(TranslateError::Unsupported(_))));
    let bad_args = to_converse(&req(json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [
        {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]})));
    assert!(matches!(bad_args, Err(TranslateError::Invalid(_))));
    // Blank text is dropped (Bedrock rejects blank blocks), and same-role turns merge.
    let out = to_converse(&req(json!({"model": "m", "messages": [
        {"role": "user", "content": "a"}, {"role": "user", "content": " "}, {"role": "user", "content": "b"}]}))).unwrap();
    assert_eq!(out["messages"], json!([{"role": "user", "content": [{"text": "a"}, {"text": "b"}]}]));
}

#[test]
fn answers_translate_back() {
    let (c, usage) = completion(fixture("converse.json").as_bytes(), &meta()).unwrap();
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(v["model"], "chat");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"], json!({"role": "assistant", "content": "Hello! How can I help you today?"}));
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"], json!({"prompt_tokens": 12, "completion_tokens": 10, "total_tokens": 22}));
    assert_eq!(usage.summary().total_tokens, 22);

    let (c, _) = completion(fixture("converse-tool-use.json").as_bytes(), &meta()).unwrap();
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["id"], "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "top_song");
    assert_eq!(serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(), json!({"sign": "WZPZ"}));
    assert_eq!(v["choices"][0]["message"]["content"], "I'll look up the most popular song on WZPZ.");

    for (reason, finish) in [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
        ("guardrail_intervened", "content_filter"), ("content_filtered", "content_filter")] {
        let body = json!({"output": {"message": {"role": "assistant", "content": [{"text": "x"}]}}, "stopReason": reason,
            "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}});
        let (c, _) = completion(body.to_string().as_bytes(), &meta()).unwrap();
        assert_eq!(c.choices[0].finish_reason.as_deref(), Some(finish), "{reason}");
    }
    assert!(completion(b"{\"message\": \"nope\"", &meta()).is_err());
}

#[test]
fn cached_tokens_count_in_the_prompt() {
    let u = TokenUsage { input_tokens: 4, output_tokens: 30, total_tokens: 1058, cache_read_input_tokens: 0, cache_write_input_tokens: 1024 };
    let o = usage_to_openai(&u);
    assert_eq!((o.prompt_tokens, o.completion_tokens, o.total_tokens), (1028, 30, 1058));
    assert_eq!(o.prompt_tokens_details, Some(PromptTokensDetails { cached_tokens: 0, cache_creation_tokens: 1024 }));
    let u = TokenUsage { input_tokens: 4, output_tokens: 30, total_tokens: 1058, cache_read_input_tokens: 1024, cache_write_input_tokens: 0 };
    assert_eq!(serde_json::to_value(usage_to_openai(&u)).unwrap()["prompt_tokens_details"], json!({"cached_tokens": 1024}));
}

/// The event-stream bytes of a fixture (`:event-type` then one JSON payload per line).
fn fixture_stream(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in fixture(name).lines().filter(|l| !l.trim().is_empty()) {
        let (kind, payload) = line.split_once(' ').unwrap();
        out.extend(encode(&[(":event-type", kind), (":content-type", "application/json"), (":message-type", "event")], payload.as_bytes()));
    }
    out
}

fn run(bytes: &[u8], include_usage: bool, cut: Option<usize>) -> (Vec<Chunk>, Result<(), StreamError>) {
    let mut t = StreamTranslator::new(meta(), include_usage);
    let mut chunks = Vec::new();
    let parts: Vec<&[u8]> = match cut {
        Some(c) => vec![&bytes[..c], &bytes[c..]],
        None => vec![bytes],
    };
    for p in parts {
        match t.push(p) {
            Ok(c) => chunks.extend(c),
            Err(e) => return (chunks, Err(e)),
        }
    }
    let end = t.end();
    (chunks, end)
}

fn json_of(c: &Chunk) -> Value {
    serde_json::from_slice(&c.data).unwrap()
}

#[test]
fn text_streams_become_chunks_with_usage() {
    let bytes = fixture_stream("converse-stream-text.events");
    let (chunks, end) = run(&bytes, true, None);
    end.unwrap();
    let v: Vec<Value> = chunks.iter().map(json_of).collect();
    assert_eq!(v[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    assert!(!chunks[0].content);
    let text: String = v.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "Hello! How can I help you today?");
    let fin = chunks.iter().position(|c| c.finish).unwrap();
    assert_eq!(v[fin]["choices"][0]["finish_reason"], "stop");
    let last = chunks.last().unwrap();
    assert_eq!(v.last().unwrap()["choices"], json!([]));
    assert_eq!(v.last().unwrap()["usage"], json!({"prompt_tokens": 12, "completion_tokens": 10, "total_tokens": 22}));
    assert_eq!(last.usage.map(|u| u.total_tokens), Some(22));
    assert!(v[1..v.len() - 1].iter().all(|c| c["usage"].is_null()));

    // Without include_usage the usage still reaches the gateway, in an empty-data chunk.
    let (chunks, _) = run(&bytes, false, None);
    let last = chunks.last().unwrap();
    assert!(last.data.is_empty());
    assert_eq!(last.usage.map(|u| u.prompt_tokens), Some(12));
    assert!(chunks[..chunks.len() - 1].iter().all(|c| json_of(c).get("usage").is_none()));
}

#[test]
fn streamed_tool_input_fragments_are_kept_at_every_split() {
    let bytes = fixture_stream("converse-stream-tool-use.events");
    let (whole, end) = run(&bytes, false, None);
    end.unwrap();
    for cut in 0..=bytes.len() {
        let (chunks, end) = run(&bytes, false, Some(cut));
        end.unwrap();
        assert_eq!(chunks.last().unwrap().usage, whole.last().unwrap().usage);
        let a: Vec<Value> = chunks.iter().filter(|c| !c.data.is_empty()).map(json_of).collect();
        let b: Vec<Value> = whole.iter().filter(|c| !c.data.is_empty()).map(json_of).collect();
        assert_eq!(a.len(), b.len(), "split at {cut}");
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x["choices"], y["choices"], "split at {cut}");
        }
    }
    let v: Vec<Value> = whole.iter().filter(|c| !c.data.is_empty()).map(json_of).collect();
    let calls: Vec<&Value> = v.iter().filter_map(|c| c["choices"][0]["delta"].get("tool_calls")).collect();
    assert_eq!(calls[0][0], json!({"index": 0, "id": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "type": "function", "function": {"name": "top_song", "arguments": ""}}));
    let args: String = calls.iter().filter_map(|c| c[0]["function"]["arguments"].as_str()).collect();
    assert_eq!(serde_json::from_str::<Value>(&args).unwrap(), json!({"sign": "WZPZ"}));
    assert!(calls.len() >= 4, "each input fragment is its own delta: {calls:?}");
    assert!(calls[1..].iter().all(|c| c[0]["index"] == 0 && c[0].get("id").is_none()));
    let text: String = v.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "I'll look up the most popular song on WZPZ.");
    assert!(v.iter().any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
    assert_eq!(whole.last().unwrap().usage.map(|u| u.completion_tokens), Some(45));
}

#[test]
fn exceptions_and_truncation_are_errors() {
    let exception = encode(
        &[(":exception-type", "throttlingException"), (":content-type", "application/json"), (":message-type", "exception")],
        br#"{"message":"Too many requests, please wait before trying again."}"#,
    );
    let (chunks, end) = run(&exception, false, None);
    assert!(chunks.is_empty());
    assert_eq!(end, Err(StreamError::Exception { kind: "throttlingException".into(), message: "Too many requests, please wait before trying again.".into() }));

    let generic = encode(&[(":message-type", "error"), (":error-code", "InternalFailure"), (":error-message", "boom")], b"");
    let (_, end) = run(&generic, false, None);
    assert_eq!(end, Err(StreamError::Exception { kind: "InternalFailure".into(), message: "boom".into() }));

    let bytes = fixture_stream("converse-stream-text.events");
    // Cut before messageStop: incomplete.
    let stop = encode(&[(":event-type", "messageStop"), (":content-type", "application/json"), (":message-type", "event")], br#"{"stopReason":"end_turn"}"#);
    let before_stop = bytes.windows(stop.len()).position(|w| w == stop).unwrap();
    let mut t = StreamTranslator::new(meta(), false);
    let chunks = t.push(&bytes[..before_stop]).unwrap();
    assert!(chunks.iter().any(|c| c.content));
    assert!(t.content_sent());
    assert_eq!(t.end(), Err(StreamError::Incomplete));
    // A corrupted CRC.
    let mut bad = bytes.clone();
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    let (_, end) = run(&bad, false, None);
    assert!(matches!(end, Err(StreamError::Invalid(m)) if m.contains("CRC")));
}

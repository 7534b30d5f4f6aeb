use bytes::Bytes;
use serde_json::{Value, json};

use super::*;

fn req(body: &str) -> Result<ChatRequest, RequestError> {
    ChatRequest::parse(Bytes::copy_from_slice(body.as_bytes()))
}

#[test]
fn reads_only_what_routing_needs() {
    let r = req(r#"{"messages":[{"role":"user","content":"hi"}],"model":"chat","stream":true,"stream_options":{"include_usage":true},"temperature":0.2}"#).unwrap();
    assert_eq!(r.model, "chat");
    assert!(r.stream);
    assert!(r.include_usage);
    let r = req(r#"{"model":"chat","messages":[],"stream":null}"#).unwrap();
    assert!(!r.stream && !r.include_usage);
}

#[test]
fn rewrites_model_and_keeps_every_other_byte() {
    let body = r#"{ "model" : "chat",  "messages":[{"role":"user","content":"caf\u00e9 \"q\""}],"x":{"model":"inner"}}"#;
    let r = req(body).unwrap();
    let out = r.body_with_model("meta-llama/llama-3.1-8b-instruct");
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        r#"{ "model" : "meta-llama/llama-3.1-8b-instruct",  "messages":[{"role":"user","content":"caf\u00e9 \"q\""}],"x":{"model":"inner"}}"#
    );
    let out = r.body_with_model("we\"ird");
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["model"], "we\"ird");
    assert_eq!(v["x"]["model"], "inner");
}

#[test]
fn escaped_model_names_are_decoded() {
    let r = req(r#"{"model":"ch\u0061t","messages":[]}"#).unwrap();
    assert_eq!(r.model, "chat");
    let v: Value = serde_json::from_slice(&r.body_with_model("up")).unwrap();
    assert_eq!(v["model"], "up");
}

#[test]
fn rejects_what_openai_rejects() {
    let e = req(r#"{"model":"chat","messages":[}"#).unwrap_err();
    assert_eq!(e.code, Some("invalid_json"));
    let e = req(r#"{"messages":[]}"#).unwrap_err();
    assert_eq!(e.param, Some("model"));
    let e = req(r#"{"model":"chat"}"#).unwrap_err();
    assert_eq!(e.param, Some("messages"));
    let e = req(r#"{"model":5,"messages":[]}"#).unwrap_err();
    assert_eq!(e.code, Some("invalid_type"));
    let e = req(r#"{"model":"chat","messages":"hi"}"#).unwrap_err();
    assert_eq!(e.param, Some("messages"));
    assert!(req(r#"{"model":"chat","messages":[]} trailing"#).is_err());
    assert!(req(r#"[1,2]"#).is_err());
    assert!(req(r#"{"model":"chat","messages":[],"stream":"yes"}"#).is_err());
}

#[test]
fn last_user_text_handles_strings_and_parts() {
    let r = req(r#"{"model":"m","messages":[{"role":"user","content":"first"},{"role":"assistant","content":"x"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"data:"}},{"type":"text","text":"b"}]}]}"#).unwrap();
    assert_eq!(r.last_user_text(), "a b");
}

// A Groq response as documented in its API reference: a non-standard `x_groq`, and usage with
// extra timing fields that must be preserved.
const GROQ_COMPLETION: &str = r#"{"id":"chatcmpl-f51b2cd2-bef7-417e-964e-a08f0b513c22","object":"chat.completion","created":1730241104,"model":"llama3-8b-8192","choices":[{"index":0,"message":{"role":"assistant","content":"Fast language models."},"logprobs":null,"finish_reason":"stop"}],"usage":{"queue_time":0.037493756,"prompt_tokens":18,"prompt_time":0.000680594,"completion_tokens":556,"completion_time":0.463333333,"total_tokens":574,"total_time":0.464013927},"system_fingerprint":"fp_179b0f92c9","x_groq":{"id":"req_01jbd6g2qdfw2adyrt2az8hz4w"}}"#;

#[test]
fn completion_is_normalized() {
    let (body, usage) = normalize_completion(GROQ_COMPLETION.as_bytes(), "chat").unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(v.get("x_groq").is_none());
    assert_eq!(v["model"], "chat");
    assert_eq!(v["choices"][0]["message"]["content"], "Fast language models.");
    assert_eq!(v["usage"]["queue_time"], json!(0.037493756), "usage is preserved as sent");
    assert_eq!(v["system_fingerprint"], "fp_179b0f92c9");
    assert_eq!(usage, Some(Usage { prompt_tokens: 18, completion_tokens: 556, total_tokens: 574 }));
}

#[test]
fn non_standard_choice_fields_and_finish_reasons_are_normalized() {
    let body = r#"{"id":"x","object":"chat.completion","created":1,"model":"m","provider":"DeepInfra","choices":[{"index":0,"message":{"role":"assistant","content":"hi","reasoning":"kept"},"finish_reason":"eos","native_finish_reason":"eos","stop_reason":128009}]}"#;
    let (body, usage) = normalize_completion(body.as_bytes(), "a").unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v,
        json!({"id":"x","object":"chat.completion","created":1,"model":"a",
               "choices":[{"index":0,"message":{"role":"assistant","content":"hi","reasoning":"kept"},"finish_reason":"stop"}]})
    );
    assert_eq!(usage, None);
}

#[test]
fn finish_reasons_map_onto_openais_set() {
    for (from, to) in [
        ("stop", "stop"),
        ("eos", "stop"),
        ("end_turn", "stop"),
        ("length", "length"),
        ("max_tokens", "length"),
        ("model_length", "length"),
        ("tool_calls", "tool_calls"),
        ("tool_use", "tool_calls"),
        ("content_filter", "content_filter"),
        ("SAFETY".to_ascii_lowercase().leak(), "content_filter"),
        ("function_call", "function_call"),
        ("something_new", "stop"),
    ] {
        assert_eq!(map_finish_reason(from), to, "{from}");
    }
}

#[test]
fn chunks_are_classified() {
    let preamble = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"x_groq":{"id":"req_1"}}"#;
    let c = normalize_chunk(preamble.as_bytes(), "chat", true).unwrap();
    assert!(!c.content && !c.finish);
    let v: Value = serde_json::from_slice(&c.data).unwrap();
    assert!(v.get("x_groq").is_none());
    assert_eq!(v["model"], "chat");

    let text = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#;
    assert!(normalize_chunk(text.as_bytes(), "chat", true).unwrap().content);

    let tool = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]},"finish_reason":null}]}"#;
    assert!(normalize_chunk(tool.as_bytes(), "chat", true).unwrap().content);

    let finish = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"eos"}],"x_groq":{"id":"req_1","usage":{"prompt_tokens":1}}}"#;
    let c = normalize_chunk(finish.as_bytes(), "chat", true).unwrap();
    assert!(c.finish && !c.content);
    let v: Value = serde_json::from_slice(&c.data).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    let usage = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;
    let c = normalize_chunk(usage.as_bytes(), "chat", true).unwrap();
    assert_eq!(c.usage, Some(Usage { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 }));
    assert!(!c.content && !c.finish);
}

#[test]
fn error_objects_in_streams_are_recognised() {
    let e = normalize_chunk(br#"{"error":{"message":"overloaded","type":"server_error"}}"#, "chat", true).unwrap_err();
    assert_eq!(e, NormalizeError::Upstream("overloaded".into()));
    let e = normalize_chunk(br#"{"error":"plain"}"#, "chat", true).unwrap_err();
    assert_eq!(e, NormalizeError::Upstream("plain".into()));
    assert!(matches!(normalize_chunk(b"not json", "chat", true), Err(NormalizeError::Invalid(_))));
    assert!(matches!(normalize_chunk(br#"{"id":"x"}"#, "chat", true), Err(NormalizeError::Invalid(_))));
}

#[test]
fn usage_is_asked_for_on_streams_and_hidden_from_callers_who_did_not_ask() {
    let r = req(r#"{"model":"chat","stream":true,"messages":[]}"#).unwrap();
    let body = r.upstream_body("up", true);
    assert_eq!(std::str::from_utf8(&body).unwrap(), r#"{"stream_options":{"include_usage":true},"model":"up","stream":true,"messages":[]}"#);
    // Not for non-streaming calls, nor when the caller sent its own stream_options.
    let r = req(r#"{"model":"chat","messages":[]}"#).unwrap();
    assert_eq!(&r.upstream_body("up", true)[..], br#"{"model":"up","messages":[]}"#);
    let r = req(r#"{"model":"chat","stream":true,"stream_options":{"include_usage":false},"messages":[]}"#).unwrap();
    assert!(r.has_stream_options);
    assert_eq!(&r.upstream_body("up", true)[..], br#"{"model":"up","stream":true,"stream_options":{"include_usage":false},"messages":[]}"#);
    let v: Value = serde_json::from_slice(&r.body_without_stream_options("up")).unwrap();
    assert_eq!(v, json!({"model":"up","stream":true,"messages":[]}));

    let chunk = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}],"usage":null}"#;
    let c = normalize_chunk(chunk.as_bytes(), "chat", false).unwrap();
    assert!(serde_json::from_slice::<Value>(&c.data).unwrap().get("usage").is_none());
    let last = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;
    let c = normalize_chunk(last.as_bytes(), "chat", false).unwrap();
    assert!(c.data.is_empty(), "a usage chunk the caller did not ask for is not sent");
    assert_eq!(c.usage.unwrap().total_tokens, 7, "but the gateway learns the usage");
}

#[test]
fn a_stream_reuses_the_normalized_members_before_choices() {
    let chunk = |text: &str| {
        format!(r#"{{"id":"c1","object":"chat.completion.chunk","created":7,"model":"up","system_fingerprint":"fp","choices":[{{"index":0,"delta":{{"content":"{text}"}},"finish_reason":null}}]}}"#)
    };
    let mut prefix = ChunkPrefix::default();
    let first = normalize_stream_chunk(chunk("a").as_bytes(), "alias", false, &mut prefix).unwrap();
    // Remembered: the input up to the `choices` value, and the output before `,"choices":`.
    let (at, out) = prefix.matches(chunk("b").as_bytes()).expect("the next chunk starts the same");
    assert_eq!(&chunk("b")[at - 10..at], r#""choices":"#);
    assert_eq!(std::str::from_utf8(out).unwrap(), r#"{"id":"c1","object":"chat.completion.chunk","created":7,"model":"alias","system_fingerprint":"fp""#);
    let second = normalize_stream_chunk(chunk("b").as_bytes(), "alias", false, &mut prefix).unwrap();
    assert_eq!(first.data, normalize_chunk(chunk("a").as_bytes(), "alias", false).unwrap().data);
    assert_eq!(second.data, normalize_chunk(chunk("b").as_bytes(), "alias", false).unwrap().data);
    assert!(second.content);
    // A chunk that differs before `choices` is scanned in full, and becomes the new prefix.
    let other = chunk("c").replace("\"created\":7", "\"created\":8");
    assert!(prefix.matches(other.as_bytes()).is_none());
    let third = normalize_stream_chunk(other.as_bytes(), "alias", false, &mut prefix).unwrap();
    assert_eq!(third.data, normalize_chunk(other.as_bytes(), "alias", false).unwrap().data);
    assert!(prefix.matches(other.as_bytes()).is_some());
    // The same bytes up to `"choices":` and then spaces before the value (this failed once).
    let spaced = other.replace("\"choices\":[", "\"choices\": \n[");
    let fourth = normalize_stream_chunk(spaced.as_bytes(), "alias", false, &mut prefix).unwrap();
    assert_eq!(fourth.data, normalize_chunk(spaced.as_bytes(), "alias", false).unwrap().data);
    // Usage or an error before `choices` is state the prefix cannot carry: not remembered.
    let mut fresh = ChunkPrefix::default();
    let with_usage = r#"{"id":"c1","usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2},"choices":[]}"#;
    normalize_stream_chunk(with_usage.as_bytes(), "alias", true, &mut fresh).unwrap();
    assert!(fresh.matches(with_usage.as_bytes()).is_none());
}

#[test]
fn a_stream_reuses_the_shape_of_a_text_delta() {
    let chunk = |choice: &str| {
        format!(r#"{{"id":"c1","object":"chat.completion.chunk","created":7,"model":"up","choices":[{choice}],"usage":null,"obfuscation":"x{}"}}"#, choice.len())
    };
    let text = |t: &str| chunk(&format!(r#"{{"index":0,"delta":{{"content":{}}},"logprobs":null,"finish_reason":null}}"#, serde_json::to_string(t).unwrap()));
    let choices_at = |c: &str| c.find("\"choices\":").unwrap() + 10;
    let mut prefix = ChunkPrefix::default();
    let alone = |c: &str| normalize_chunk(c.as_bytes(), "alias", false).unwrap();
    let preamble = chunk(r#"{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}"#);
    normalize_stream_chunk(preamble.as_bytes(), "alias", false, &mut prefix).unwrap();
    assert!(prefix.choice.shape.is_empty(), "a delta of two members is not a text delta");
    let first = normalize_stream_chunk(text("Hello").as_bytes(), "alias", false, &mut prefix).unwrap();
    assert_eq!(first.data, alone(&text("Hello")).data);
    // Written as its SSE event, the chunk's JSON being the bytes inside.
    assert_eq!(first.framed, [&b"data: "[..], &first.data, b"\n\n"].concat());
    assert_eq!(first.framed[6..].as_ptr(), first.data.as_ptr());
    let (before, after) = prefix.choice.shape.parts();
    assert_eq!(before, br#"[{"index":0,"delta":{"content":""#);
    assert_eq!(after, br#""},"logprobs":null,"finish_reason":null}]"#);
    // Another text, escapes and an empty one included: the same shape, the same output as alone.
    for t in [" world", "say \"hi\"\n\\", ""] {
        let c = text(t);
        let (end, content, finish) = prefix.choice.matches(c.as_bytes(), choices_at(&c)).expect("the same shape");
        assert_eq!(&c[end..end + 10], r#","usage":n"#);
        assert_eq!((content, finish), (!t.is_empty(), false));
        let n = normalize_stream_chunk(c.as_bytes(), "alias", false, &mut prefix).unwrap();
        let a = alone(&c);
        assert_eq!((n.data, n.content, n.finish, n.choices), (a.data, a.content, a.finish, a.choices));
    }
    // Near shapes are walked: a finish, another member, two choices, a cut-off text.
    let finish = chunk(r#"{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}"#);
    let reasoning = chunk(r#"{"index":0,"delta":{"content":"a","reasoning_content":"b"},"logprobs":null,"finish_reason":null}"#);
    let two = text("a").replace("null}]", r#"null},{"index":1,"delta":{"content":"b"},"logprobs":null,"finish_reason":null}]"#);
    for c in [&finish, &reasoning, &two] {
        assert!(prefix.choice.matches(c.as_bytes(), choices_at(c)).is_none(), "{c}");
        let n = normalize_stream_chunk(c.as_bytes(), "alias", false, &mut prefix).unwrap();
        assert_eq!(n.data, alone(c).data);
    }
    let cut = &text("abc")[..choices_at(&text("abc")) + 33];
    assert!(prefix.choice.matches(cut.as_bytes(), choices_at(cut)).is_none());
    assert_eq!(normalize_stream_chunk(cut.as_bytes(), "alias", false, &mut prefix).unwrap_err(), normalize_chunk(cut.as_bytes(), "alias", false).unwrap_err());
    // A text delta whose choice is rewritten (a finish reason mapped) is not a shape to copy.
    let mut fresh = ChunkPrefix::default();
    let mapped = chunk(r#"{"index":0,"delta":{"content":"a"},"finish_reason":"eos"}"#);
    normalize_stream_chunk(mapped.as_bytes(), "alias", false, &mut fresh).unwrap();
    assert!(fresh.choice.shape.is_empty());
}

#[test]
fn a_choice_is_copied_whole_until_a_member_changes() {
    let norm = |choice: &str| {
        let chunk = format!(r#"{{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{choice}]}}"#);
        let n = normalize_chunk(chunk.as_bytes(), "a", false).unwrap();
        let v: Value = serde_json::from_slice(&n.data).unwrap();
        (v["choices"][0].clone(), String::from_utf8(n.data.to_vec()).unwrap(), n.content, n.finish)
    };
    // Unchanged: copied byte for byte (its whitespace too).
    let (_, text, content, finish) = norm(r#"{ "index":0, "delta":{"content":"x"},"logprobs":null,"finish_reason":null }"#);
    assert!(text.contains(r#"[{ "index":0, "delta":{"content":"x"},"logprobs":null,"finish_reason":null }]"#), "{text}");
    assert!(content && !finish);
    let (_, text, _, finish) = norm(r#"{"index":0,"delta":{},"finish_reason":"stop"}"#);
    assert!(text.contains(r#"[{"index":0,"delta":{},"finish_reason":"stop"}]"#) && finish);
    // A member dropped first, in the middle, last; a finish reason mapped.
    for (choice, want) in [
        (r#"{"x":1,"index":0,"delta":{"content":"y"}}"#, json!({"index":0,"delta":{"content":"y"}})),
        (r#"{"index":0,"stop_reason":null,"delta":{"role":"assistant"},"finish_reason":null}"#, json!({"index":0,"delta":{"role":"assistant"},"finish_reason":null})),
        (r#"{"index":0,"delta":{},"finish_reason":"eos","native":"eos"}"#, json!({"index":0,"delta":{},"finish_reason":"stop"})),
        (r#"{"index":0,"finish_reason":7}"#, json!({"index":0,"finish_reason":null})),
        (r#"{"ind\u0065x":0}"#, json!({})),
    ] {
        let (got, text, _, _) = norm(choice);
        assert_eq!(got, want, "{choice} -> {text}");
    }
}

use serde_json::{Value, json};

use super::*;

fn chunk(v: Value) -> Chunk {
    let finish = v.pointer("/choices/0/finish_reason").is_some_and(|f| !f.is_null());
    let content = v.pointer("/choices/0/delta/content").and_then(Value::as_str).is_some_and(|c| !c.is_empty());
    let usage = v.get("usage").filter(|u| u.is_object()).map(|u| Usage {
        prompt_tokens: u["prompt_tokens"].as_u64().unwrap(),
        completion_tokens: u["completion_tokens"].as_u64().unwrap(),
        total_tokens: u["total_tokens"].as_u64().unwrap(),
    });
    Chunk::new(Bytes::from(v.to_string()), content, finish, usage)
}

fn delta(id: &str, model: &str, created: u64, delta: Value, finish: Option<&str>) -> Chunk {
    chunk(json!({
        "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }))
}

fn json_of(c: &Chunk) -> Value {
    serde_json::from_slice(&c.data).unwrap()
}

/// A splicer that saw `parts` of an original stream `chatcmpl-A` and then was recovered from
/// a/model-a to b/model-b with `carried` usage.
fn recovered(parts: &[&str], carried: Usage, strip: bool) -> Splicer {
    let mut s = Splicer::default();
    assert!(s.pass(delta("chatcmpl-A", "chat", 100, json!({"role": "assistant", "content": ""}), None)).is_some());
    for p in parts {
        let c = delta("chatcmpl-A", "chat", 100, json!({"content": p}), None);
        let out = s.pass(c.clone()).expect("original chunks pass");
        assert_eq!(out.data, c.data, "original chunks are relayed byte for byte");
    }
    s.carried = carried;
    s.active = Some(Active { from: "a/model-a".into(), to: "b/model-b".into(), strip_leading_space: strip, keep_role: false });
    s
}

#[test]
fn before_recovery_chunks_pass_unchanged_and_the_text_is_collected() {
    let s = recovered(&["Hello ", "from "], Usage::default(), false);
    assert_eq!(s.recoverable(), Some("Hello from "));
    assert_eq!(s.envelope.as_ref().unwrap()[0], json!("chatcmpl-A"));
}

#[test]
fn a_continuation_is_relabelled_its_preamble_dropped_and_its_end_marked() {
    let carried = Usage { prompt_tokens: 10, completion_tokens: 3, total_tokens: 13 };
    let mut s = recovered(&["Hello ", "from "], carried, false);

    // B's role-only preamble goes nowhere.
    assert!(s.pass(delta("chatcmpl-B", "chat-b", 200, json!({"role": "assistant", "content": ""}), None)).is_none());
    // A content chunk carrying a role keeps its text, loses the role, takes A's envelope.
    let out = s.pass(delta("chatcmpl-B", "chat-b", 200, json!({"role": "assistant", "content": "the other side"}), None)).unwrap();
    let v = json_of(&out);
    assert_eq!((v["id"].as_str(), v["model"].as_str(), v["created"].as_u64()), (Some("chatcmpl-A"), Some("chat"), Some(100)));
    assert_eq!(v["choices"][0]["delta"], json!({"content": "the other side"}));
    assert!(v.get("switchyard").is_none(), "only the end is marked: {v}");
    assert!(out.content);

    let finish = s.pass(delta("chatcmpl-B", "chat-b", 200, json!({}), Some("stop"))).unwrap();
    let v = json_of(&finish);
    assert_eq!(v["id"], "chatcmpl-A");
    assert_eq!(v["switchyard"], json!({"recovered": true, "from": "a/model-a", "to": "b/model-b"}));

    let usage = chunk(json!({
        "id": "chatcmpl-B", "object": "chat.completion.chunk", "created": 200, "model": "chat-b", "choices": [],
        "usage": {"prompt_tokens": 20, "completion_tokens": 4, "total_tokens": 24, "prompt_tokens_details": {"cached_tokens": 0}},
    }));
    let out = s.pass(usage).unwrap();
    let v = json_of(&out);
    assert_eq!(v["usage"]["prompt_tokens"], 30);
    assert_eq!(v["usage"]["completion_tokens"], 7);
    assert_eq!(v["usage"]["total_tokens"], 37);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 0, "the rest of the usage is kept");
    assert_eq!(out.usage, Some(Usage { prompt_tokens: 30, completion_tokens: 7, total_tokens: 37 }));
    assert_eq!(v["switchyard"]["to"], "b/model-b");
    assert_eq!(s.text, "Hello from the other side");
}

#[test]
fn usage_only_the_gateway_sees_is_summed_too() {
    let carried = Usage { prompt_tokens: 10, completion_tokens: 3, total_tokens: 13 };
    let mut s = recovered(&["Hi "], carried, false);
    let hidden = Chunk::new(Bytes::new(), false, false, Some(Usage { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 }));
    let out = s.pass(hidden).unwrap();
    assert!(out.data.is_empty());
    assert_eq!(out.usage, Some(Usage { prompt_tokens: 11, completion_tokens: 5, total_tokens: 16 }));
}

#[test]
fn whitespace_lost_by_a_trimmed_prefill_is_not_sent_twice() {
    let mut s = recovered(&["Hello, "], Usage::default(), true);
    assert!(s.pass(delta("b", "m", 1, json!({"content": "  "}), None)).is_none(), "whitespace only: dropped");
    let out = s.pass(delta("b", "m", 1, json!({"content": " world"}), None)).unwrap();
    assert_eq!(json_of(&out)["choices"][0]["delta"]["content"], "world");
    let out = s.pass(delta("b", "m", 1, json!({"content": " again"}), None)).unwrap();
    assert_eq!(json_of(&out)["choices"][0]["delta"]["content"], " again", "only the first text is trimmed");
    assert_eq!(s.text, "Hello, world again");
}

#[test]
fn tool_calls_several_choices_and_whitespace_only_rule_recovery_out() {
    let mut s = Splicer::default();
    assert_eq!(s.recoverable(), Some(""), "nothing streamed yet: the request starts over");
    s.pass(delta("a", "m", 1, json!({"content": "  "}), None));
    assert_eq!(s.recoverable(), None, "whitespace is no answer to continue");
    s.pass(delta("a", "m", 1, json!({"content": "Let me check."}), None));
    assert_eq!(s.recoverable(), Some("  Let me check."));
    s.pass(delta("a", "m", 1, json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}]}), None));
    assert_eq!(s.recoverable(), None, "a tool call was in progress");

    let mut s = Splicer::default();
    s.pass(chunk(json!({"id": "a", "model": "m", "created": 1, "choices": [
        {"index": 0, "delta": {"content": "one"}, "finish_reason": null},
        {"index": 1, "delta": {"content": "two"}, "finish_reason": null},
    ]})));
    assert_eq!(s.recoverable(), None, "n > 1");
}

#[test]
fn a_restart_before_any_chunk_keeps_its_role_and_is_marked_at_the_end() {
    // Committed on the upstream's head, A broke before its preamble: the caller has nothing.
    let mut s = Splicer { active: Some(Active { from: "a/model-a".into(), to: "b/model-b".into(), strip_leading_space: false, keep_role: true }), ..Default::default() };
    let out = s.pass(delta("chatcmpl-B", "chat-b", 200, json!({"role": "assistant", "content": ""}), None)).expect("the role preamble is the caller's first chunk");
    assert_eq!(json_of(&out)["choices"][0]["delta"]["role"], "assistant");
    let out = s.pass(delta("chatcmpl-B", "chat-b", 200, json!({"content": "Hi"}), Some("stop"))).unwrap();
    let v = json_of(&out);
    assert_eq!((v["id"].as_str(), v["choices"][0]["delta"]["content"].as_str()), (Some("chatcmpl-B"), Some("Hi")), "no envelope to take over");
    assert_eq!(v["switchyard"], json!({"recovered": true, "from": "a/model-a", "to": "b/model-b"}));
}

fn request(body: Value) -> ChatRequest {
    ChatRequest::parse(Bytes::from(body.to_string())).unwrap()
}

#[test]
fn a_continuation_ends_with_the_partial_answer_and_asks_to_continue_unless_prefilled() {
    let original = request(json!({
        "model": "chat", "stream": true, "max_tokens": 100, "temperature": 0.2,
        "messages": [{"role": "user", "content": "Say hello"}],
    }));
    let plain = continuation(&original, "Hello from ", false).unwrap();
    let v: Value = serde_json::from_slice(&plain.body).unwrap();
    let messages = v["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[1], json!({"role": "assistant", "content": "Hello from "}));
    assert_eq!(messages[2], json!({"role": "user", "content": CONTINUE_INSTRUCTION}));
    assert_eq!(v["temperature"], 0.2, "the rest of the request is kept");
    assert!(plain.stream);
    let spent = crate::tokens::count("chat", "Hello from ");
    assert_eq!(v["max_tokens"], 100 - spent, "the tokens already streamed count against max_tokens");

    let prefill = continuation(&original, "Hello from ", true).unwrap();
    let v: Value = serde_json::from_slice(&prefill.body).unwrap();
    let messages = v["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1], json!({"role": "assistant", "content": "Hello from"}), "no trailing whitespace in a prefill");
}

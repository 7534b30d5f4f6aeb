use serde_json::{Value, json};

use super::types::*;
use super::*;
use crate::wire::openai::types::{ChatCompletionChunk, ChatCompletionRequest, Content, ContentPart, ToolChoice as OpenAiToolChoice};
use crate::wire::chunk::Chunk;
use crate::wire::sse::SseParser;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../switchyard-fakes/fixtures/anthropic/", $name))
    };
}

fn openai(v: Value) -> ChatCompletionRequest {
    serde_json::from_value(v).unwrap()
}

fn anthropic(v: Value) -> MessagesRequest {
    serde_json::from_value(v).unwrap()
}

fn to_value(v: &impl serde::Serialize) -> Value {
    serde_json::to_value(v).unwrap()
}

// ---------------------------------------------------------------------------------------------
// OpenAI request → Anthropic request

/// Every kind of OpenAI message and content part, tools and the sampling fields.
fn full_openai_request() -> Value {
    json!({
        "model": "chat", "stream": true, "stream_options": {"include_usage": true},
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this picture, and the weather there?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/zurich.jpg"}},
                {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}}
            ]},
            {"role": "assistant", "content": "Zürich. Let me check.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Zürich\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18°C, sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "14:05"}]},
            {"role": "user", "content": "Thanks!"}
        ],
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
            {"type": "function", "function": {"name": "get_time"}}
        ],
        "tool_choice": "required", "parallel_tool_calls": false,
        "temperature": 1.5, "top_p": 0.9, "stop": ["\n\nHuman:"], "max_completion_tokens": 300, "user": "user-42",
        "seed": 7, "presence_penalty": 0.5
    })
}

#[test]
fn openai_request_translates_to_anthropic() {
    let out = to_anthropic(&openai(full_openai_request()), "claude-sonnet-4-5", 4096).unwrap();
    insta::assert_json_snapshot!("openai_to_anthropic_request", out);
}

#[test]
fn system_and_developer_messages_become_system() {
    let out = to_anthropic(&openai(full_openai_request()), "m", 4096).unwrap();
    assert_eq!(out.system, Some(System::Blocks(vec![ContentBlock::text("Be brief."), ContentBlock::text("Use metric units.")])));
    let one = to_anthropic(&openai(json!({"model": "m", "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]})), "m", 1).unwrap();
    assert_eq!(one.system, Some(System::Text("S".into())));
    assert_eq!(to_value(&one.messages), json!([{"role": "user", "content": "U"}]));
}

#[test]
fn images_become_base64_or_url_sources() {
    let out = to_anthropic(&openai(full_openai_request()), "m", 4096).unwrap();
    let MessageContent::Blocks(blocks) = &out.messages[0].content else { panic!("blocks") };
    assert_eq!(to_value(&blocks[1]), json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}));
    assert_eq!(to_value(&blocks[2]), json!({"type": "image", "source": {"type": "url", "url": "https://example.com/zurich.jpg"}}));
    assert_eq!(to_value(&blocks[3]), json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}, "title": "a.pdf"}));
}

#[test]
fn tool_calls_and_results_become_blocks_in_alternating_turns() {
    let out = to_anthropic(&openai(full_openai_request()), "m", 4096).unwrap();
    let roles: Vec<&str> = out.messages.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["user", "assistant", "user"], "tool results and the next user message share one turn");
    assert_eq!(
        to_value(&out.messages[1].content),
        json!([
            {"type": "text", "text": "Zürich. Let me check."},
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Zürich"}},
            {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}}
        ])
    );
    assert_eq!(
        to_value(&out.messages[2].content),
        json!([
            {"type": "tool_result", "tool_use_id": "call_1", "content": "18°C, sunny"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "14:05"}]},
            {"type": "text", "text": "Thanks!"}
        ])
    );
}

#[test]
fn consecutive_same_role_messages_are_merged() {
    let r = openai(json!({"model": "m", "messages": [
        {"role": "user", "content": "a"}, {"role": "user", "content": "b"},
        {"role": "assistant", "content": "c"}, {"role": "assistant", "content": ""}, {"role": "assistant", "content": "d"}
    ]}));
    let out = to_anthropic(&r, "m", 1).unwrap();
    assert_eq!(
        to_value(&out.messages),
        json!([
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}]}
        ])
    );
}

#[test]
fn sampling_fields_and_limits() {
    let out = to_anthropic(&openai(full_openai_request()), "claude", 4096).unwrap();
    assert_eq!(out.model, "claude");
    assert_eq!(out.max_tokens, Some(300));
    assert_eq!(out.temperature, Some(1.0), "OpenAI's 0-2 range is clamped to Anthropic's 0-1");
    assert_eq!(out.top_p, Some(0.9));
    assert_eq!(out.stop_sequences, Some(vec!["\n\nHuman:".to_owned()]));
    assert_eq!(out.metadata.unwrap().user_id.as_deref(), Some("user-42"));
    assert_eq!(out.stream, Some(true));
    let v = to_value(&to_anthropic(&openai(full_openai_request()), "claude", 4096).unwrap());
    for dropped in ["seed", "presence_penalty", "stream_options", "parallel_tool_calls", "user", "stop"] {
        assert!(v.get(dropped).is_none(), "{dropped} has no Anthropic field");
    }
    let bare = to_anthropic(&openai(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 9})), "m", 4096).unwrap();
    assert_eq!(bare.max_tokens, Some(9));
    let default = to_anthropic(&openai(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": "END"})), "m", 4096).unwrap();
    assert_eq!(default.max_tokens, Some(4096), "Anthropic requires max_tokens");
    assert_eq!(default.stop_sequences, Some(vec!["END".to_owned()]));
    assert_eq!(default.stream, None);
}

#[test]
fn tools_and_tool_choice() {
    let out = to_anthropic(&openai(full_openai_request()), "m", 4096).unwrap();
    assert_eq!(
        to_value(&out.tools),
        json!([
            {"name": "get_weather", "description": "Weather for a city",
             "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
            {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
        ])
    );
    let cases = [
        (json!("auto"), false, json!({"type": "auto"})),
        (json!("required"), false, json!({"type": "any"})),
        (json!("none"), false, json!({"type": "none"})),
        (json!({"type": "function", "function": {"name": "get_time"}}), false, json!({"type": "tool", "name": "get_time"})),
        (json!("auto"), true, json!({"type": "auto", "disable_parallel_tool_use": true})),
        (json!("required"), true, json!({"type": "any", "disable_parallel_tool_use": true})),
        (json!("none"), true, json!({"type": "none"})),
    ];
    for (choice, parallel_off, want) in cases {
        let mut r = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": choice});
        if parallel_off {
            r["parallel_tool_calls"] = json!(false);
        }
        let out = to_anthropic(&openai(r), "m", 1).unwrap();
        assert_eq!(to_value(&out.tool_choice.unwrap()), want);
    }
    let r = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "parallel_tool_calls": false});
    assert_eq!(to_value(&to_anthropic(&openai(r), "m", 1).unwrap().tool_choice), json!({"type": "auto", "disable_parallel_tool_use": true}));
}

#[test]
fn requests_anthropic_cannot_take_are_refused_with_a_reason() {
    let base = |messages: Value| json!({"model": "m", "messages": messages});
    let cases = [
        (json!({"model": "m", "messages": [], "n": 2}), "`n` must be 1"),
        (base(json!([{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]}])), "audio"),
        (base(json!([{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}])), "not a JSON object"),
        (base(json!([{"role": "tool", "content": "x"}])), "tool_call_id"),
        (base(json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}])), "image"),
        (base(json!([{"role": "critic", "content": "x"}])), "role `critic`"),
        (json!({"model": "m", "messages": [], "tools": [{"type": "custom", "function": {"name": "f"}}]}), "type `custom`"),
    ];
    for (req, want) in cases {
        let err = to_anthropic(&openai(req.clone()), "m", 1).unwrap_err();
        assert!(err.0.contains(want), "{req}: {err}");
    }
}

// ---------------------------------------------------------------------------------------------
// Anthropic request → OpenAI request

fn full_anthropic_request() -> Value {
    json!({
        "model": "chat", "max_tokens": 1024, "stream": true,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}, "title": "a.pdf"}
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Let me look.", "signature": "sig"},
                {"type": "text", "text": "A cat. Checking the weather."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Zürich"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18°C"}]},
                {"type": "text", "text": "And tomorrow?"}
            ]}
        ],
        "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "temperature": 0.3, "top_p": 0.8, "top_k": 5, "stop_sequences": ["END"], "metadata": {"user_id": "u-1"}
    })
}

#[test]
fn anthropic_request_translates_to_openai() {
    let out = to_openai(&anthropic(full_anthropic_request())).unwrap();
    insta::assert_json_snapshot!("anthropic_to_openai_request", out);
}

#[test]
fn anthropic_content_maps_onto_openai_messages() {
    let out = to_openai(&anthropic(full_anthropic_request())).unwrap();
    let roles: Vec<&str> = out.messages.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "user"], "tool results precede the rest of their turn");
    assert_eq!(out.messages[0].content, Some(Content::Text("Be brief.".into())));
    let parts = out.messages[1].content.as_ref().unwrap().parts();
    assert!(matches!(&parts[1], ContentPart::ImageUrl { image_url } if image_url.url == "data:image/jpeg;base64,/9j/4AAQ"));
    assert!(matches!(&parts[2], ContentPart::ImageUrl { image_url } if image_url.url == "https://example.com/a.png"));
    assert_eq!(parts[3], ContentPart::File { file: json!({"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}) });
    let calls = out.messages[2].tool_calls.as_ref().unwrap();
    assert_eq!(calls[0].id.as_deref(), Some("toolu_1"));
    assert_eq!(serde_json::from_str::<Value>(calls[0].function.arguments.as_deref().unwrap()).unwrap(), json!({"city": "Zürich"}));
    assert_eq!(out.messages[2].content, Some(Content::Text("A cat. Checking the weather.".into())), "thinking is dropped");
    assert_eq!(out.messages[3].tool_call_id.as_deref(), Some("toolu_1"));
    assert_eq!(out.messages[3].content, Some(Content::Text("18°C".into())));
    assert_eq!(out.tool_choice, Some(OpenAiToolChoice::Mode("required".into())));
    assert_eq!(out.parallel_tool_calls, Some(false));
    assert_eq!(out.max_tokens, Some(1024));
    assert_eq!(out.user.as_deref(), Some("u-1"));
    assert_eq!(out.stream_options.unwrap().include_usage, Some(true), "the message_delta needs the usage");
}

#[test]
fn anthropic_tool_choice_maps_onto_openai() {
    for (choice, want) in [
        (json!({"type": "auto"}), json!("auto")),
        (json!({"type": "any"}), json!("required")),
        (json!({"type": "none"}), json!("none")),
        (json!({"type": "tool", "name": "f"}), json!({"type": "function", "function": {"name": "f"}})),
    ] {
        let r = anthropic(json!({"model": "m", "max_tokens": 1, "messages": [], "tool_choice": choice}));
        let out = to_openai(&r).unwrap();
        assert_eq!(to_value(&out.tool_choice), want);
        assert_eq!(out.parallel_tool_calls, None);
    }
}

#[test]
fn anthropic_parts_only_anthropic_can_serve_are_refused() {
    let cases = [
        json!({"model": "m", "messages": [], "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
        json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]}),
        json!({"model": "m", "messages": [{"role": "system", "content": "x"}]}),
        json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "search_result", "source": "s", "title": "t", "content": []}]}]}),
    ];
    for case in cases {
        assert!(to_openai(&anthropic(case.clone())).is_err(), "{case}");
    }
}

#[test]
fn an_openai_request_survives_the_round_trip_through_anthropic() {
    let original = openai(full_openai_request());
    let back = to_openai(&to_anthropic(&original, "chat", 4096).unwrap()).unwrap();
    assert_eq!(back.tools, original.tools.map(|t| t.into_iter().map(|mut t| {
        t.function.parameters.get_or_insert_with(|| json!({"type": "object", "properties": {}}));
        t
    }).collect()));
    assert_eq!(back.tool_choice, original.tool_choice);
    assert_eq!(back.parallel_tool_calls, Some(false));
    assert_eq!(back.max_tokens, Some(300));
    assert_eq!(back.top_p, original.top_p);
    assert_eq!(back.user, original.user);
    let tool_calls = back.messages.iter().find_map(|m| m.tool_calls.clone()).unwrap();
    let args: Vec<Value> = tool_calls.iter().map(|c| serde_json::from_str(c.function.arguments.as_deref().unwrap()).unwrap()).collect();
    assert_eq!(args, [json!({"city": "Zürich"}), json!({})]);
    let tool_ids: Vec<&str> = back.messages.iter().filter_map(|m| m.tool_call_id.as_deref()).collect();
    assert_eq!(tool_ids, ["call_1", "call_2"]);
}

// ---------------------------------------------------------------------------------------------
// Answers

#[test]
fn a_text_message_becomes_a_completion() {
    let msg: Message = serde_json::from_str(fixture!("message_text.json")).unwrap();
    let c = completion_from_message(&msg, "chat", 7);
    assert_eq!(
        to_value(&c),
        json!({"id": "msg_013Zva2CMHLNnXjNJJKqJ2EF", "object": "chat.completion", "created": 7, "model": "chat",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi! My name is Claude."}, "finish_reason": "stop", "logprobs": null}],
               "usage": {"prompt_tokens": 2095, "completion_tokens": 503, "total_tokens": 2598}})
    );
}

#[test]
fn a_tool_use_message_becomes_tool_calls_with_cache_usage() {
    let msg: Message = serde_json::from_str(fixture!("message_tool_use.json")).unwrap();
    let c = completion_from_message(&msg, "chat", 7);
    insta::assert_json_snapshot!("tool_use_message_to_completion", c);
    let call = &c.choices[0].message.tool_calls.as_ref().unwrap()[0];
    assert_eq!(serde_json::from_str::<Value>(call.function.arguments.as_deref().unwrap()).unwrap(), json!({"location": "San Francisco, CA", "unit": "celsius"}));
    assert_eq!(c.choices[0].finish_reason.as_deref(), Some("tool_calls"));
    let u = c.usage.unwrap();
    assert_eq!(u.prompt_tokens, 21 + 188_086 + 1024, "Anthropic's input_tokens excludes cached tokens");
    assert_eq!(u.completion_tokens, 393);
    assert_eq!(u.total_tokens, u.prompt_tokens + 393);
    let d = u.prompt_tokens_details.unwrap();
    assert_eq!((d.cached_tokens, d.cache_creation_tokens), (1024, 188_086));
    assert_eq!(usage_from_openai(&u), Usage { cache_creation_input_tokens: Some(188_086), cache_read_input_tokens: Some(1024), ..msg.usage.clone() });
}

#[test]
fn stop_reasons_map_both_ways() {
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ] {
        assert_eq!(finish_from_stop_reason(stop), finish, "{stop}");
    }
    for (finish, stop) in [("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"), ("function_call", "tool_use"), ("content_filter", "refusal")] {
        assert_eq!(stop_reason_from_finish(finish), stop, "{finish}");
    }
}

#[test]
fn a_completion_becomes_an_anthropic_message() {
    let c = serde_json::from_value(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "x",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": "Checking.",
            "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}},
                           {"id": "call_10", "type": "function", "function": {"name": "g", "arguments": "not json"}}]}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105, "prompt_tokens_details": {"cached_tokens": 40}}
    }))
    .unwrap();
    let m = message_from_completion(&c, "chat");
    assert_eq!(
        to_value(&m),
        json!({"id": "msg_chatcmpl-1", "type": "message", "role": "assistant", "model": "chat",
               "content": [{"type": "text", "text": "Checking."},
                           {"type": "tool_use", "id": "call_9", "name": "f", "input": {"a": 1}},
                           {"type": "tool_use", "id": "call_10", "name": "g", "input": {"arguments": "not json"}}],
               "stop_reason": "tool_use", "stop_sequence": null,
               "usage": {"input_tokens": 60, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 40, "output_tokens": 5}})
    );
    let empty = serde_json::from_value(json!({"id": "c", "object": "chat.completion", "created": 1, "model": "x",
        "choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": null}}]})).unwrap();
    let m = message_from_completion(&empty, "chat");
    assert_eq!(to_value(&m.content), json!([{"type": "text", "text": ""}]), "clients index content[0]");
    assert_eq!(m.stop_reason.as_deref(), Some("max_tokens"));
}

// ---------------------------------------------------------------------------------------------
// Anthropic stream → OpenAI chunks

/// Parses an SSE body split at `cut` and translates every event.
fn translate_stream(sse: &[u8], cut: usize, include_usage: bool) -> (Vec<Chunk>, Option<ErrorBody>) {
    let mut parser = SseParser::new();
    let mut t = ToOpenAi::new("chat", include_usage, 7);
    let mut out = Vec::new();
    for piece in [&sse[..cut], &sse[cut..]] {
        parser.push(piece);
        while let Some(ev) = parser.next_event().unwrap() {
            assert_eq!(event_type(&ev.data).as_deref().map(str::as_bytes), ev.event.as_deref(), "the event name is the JSON type");
            match t.on_event(serde_json::from_slice(&ev.data).unwrap()) {
                Ok(chunks) => out.extend(chunks),
                Err(e) => return (out, Some(e)),
            }
        }
    }
    assert!(parser.finish().is_none());
    (out, None)
}

fn chunk_json(c: &Chunk) -> ChatCompletionChunk {
    serde_json::from_slice(&c.data).unwrap()
}

/// (text, [(id, name, arguments joined)], finish reason) of OpenAI chunks, as an SDK assembles them.
fn assemble(chunks: &[Chunk]) -> (String, Vec<(String, String, String)>, Option<String>) {
    let mut text = String::new();
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut finish = None;
    for c in chunks.iter().map(chunk_json) {
        for choice in &c.choices {
            text.push_str(choice.delta.content.as_deref().unwrap_or(""));
            for call in choice.delta.tool_calls.iter().flatten() {
                let i = call.index.unwrap() as usize;
                if i == calls.len() {
                    calls.push((call.id.clone().unwrap(), call.function.name.clone().unwrap(), String::new()));
                }
                calls[i].2.push_str(call.function.arguments.as_deref().unwrap_or(""));
            }
            finish = choice.finish_reason.clone().or(finish);
        }
    }
    (text, calls, finish)
}

#[test]
fn a_streamed_tool_call_keeps_every_argument_fragment_at_every_split() {
    let sse = fixture!("stream_tool_use.sse").as_bytes();
    let (whole, _) = translate_stream(sse, sse.len(), true);
    for cut in 0..=sse.len() {
        let (chunks, err) = translate_stream(sse, cut, true);
        assert!(err.is_none());
        assert_eq!(chunks, whole, "split at byte {cut}");
    }
    let (text, calls, finish) = assemble(&whole);
    assert_eq!(text, "Okay, let's check the weather in Zürich 🌤");
    assert_eq!(calls.len(), 1);
    assert_eq!((calls[0].0.as_str(), calls[0].1.as_str()), ("toolu_01KFbKqPYSuAKujiL6mTfzYA", "get_weather"));
    assert_eq!(serde_json::from_str::<Value>(&calls[0].2).unwrap(), json!({"location": "Zürich, CH", "unit": "celsius"}));
    assert_eq!(finish.as_deref(), Some("tool_calls"));
    // The first tool chunk names the call; the fragments after it carry only arguments.
    let tool_chunks: Vec<ChatCompletionChunk> = whole.iter().map(chunk_json).filter(|c| c.choices.first().is_some_and(|ch| ch.delta.tool_calls.is_some())).collect();
    assert_eq!(tool_chunks.len(), 4, "the start, then 3 non-empty fragments");
    let first = &tool_chunks[0].choices[0].delta.tool_calls.as_ref().unwrap()[0];
    assert_eq!((first.index, first.kind.as_deref(), first.function.arguments.as_deref()), (Some(0), Some("function"), Some("")));
    for c in &tool_chunks[1..] {
        let call = &c.choices[0].delta.tool_calls.as_ref().unwrap()[0];
        assert!(call.id.is_none() && call.function.name.is_none() && call.index == Some(0));
    }
}

#[test]
fn a_text_delta_takes_the_fast_path_to_the_same_bytes() {
    let start = r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":1}}}"#;
    let delta = |text: &str| json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}).to_string();
    let others = [
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}"#,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":"x"}}"#,
        r#"{"type":"content_block_stop","index":0}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":5}}"#,
        r#"{"type":"ping"}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta"}}"#,
        "not json",
    ];
    for include_usage in [false, true] {
        // An alias that needs escaping, with the very bytes the template is split at.
        let alias = r#"chat "content":"" \ alias"#;
        let mut fast = ToOpenAi::new(alias, include_usage, 7);
        let mut slow = ToOpenAi::new(alias, include_usage, 7);
        assert_eq!(fast.text_delta(delta("x").as_bytes()), None, "before message_start: the whole path");
        for t in [&mut fast, &mut slow] {
            t.on_event(serde_json::from_str(start).unwrap()).unwrap();
        }
        let texts = ["Hello", " \"quoted\" \\ back/slash", "line\nbreak\ttab\r", "\u{1}\u{1f}\u{7f} control", "Zürich 🌤", "</script>\u{2028}"];
        let mut events: Vec<String> = texts.iter().map(|t| delta(t)).collect();
        // Escapes in the upstream's JSON are read, then written as serde_json writes them.
        events.push(r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"caf\u00e9 \/ \"x\" \ud83c\udf24"}}"#.to_owned());
        // Members in another order, and members the fast path does not read.
        events.push(r#"{"delta":{"text":"late type","type":"text_delta","extra":[1,{"a":null}]},"index":0,"type":"content_block_delta"}"#.to_owned());
        for data in &events {
            let got = fast.text_delta(data.as_bytes()).expect("a text delta").expect("with text");
            let want = slow.on_event(serde_json::from_str(data).unwrap()).unwrap();
            assert_eq!(vec![got], want, "{data}");
        }
        assert_eq!(fast.text_delta(delta("").as_bytes()), Some(None), "an empty text sends nothing");
        for other in others {
            assert_eq!(fast.text_delta(other.as_bytes()), None, "{other}");
        }
    }
}

#[test]
fn stream_chunks_are_labelled_and_classified() {
    let sse = fixture!("stream_tool_use.sse").as_bytes();
    let (chunks, _) = translate_stream(sse, sse.len(), true);
    let first = chunk_json(&chunks[0]);
    assert_eq!(first.choices[0].delta.role.as_deref(), Some("assistant"));
    assert!(!chunks[0].content && !chunks[0].finish, "the role preamble is not content");
    for c in &chunks {
        let j = chunk_json(c);
        assert_eq!((j.model.as_str(), j.object.as_str(), j.id.as_str(), j.created), ("chat", "chat.completion.chunk", "msg_01K2JbSUMYhez5RHoK9ZCj9U", 7));
    }
    let finish = &chunks[chunks.len() - 2];
    assert!(finish.finish && !finish.content);
    let last = chunks.last().unwrap();
    let usage_chunk = chunk_json(last);
    assert!(usage_chunk.choices.is_empty());
    assert_eq!(
        to_value(&usage_chunk.usage),
        json!({"prompt_tokens": 849, "completion_tokens": 47, "total_tokens": 896, "prompt_tokens_details": {"cached_tokens": 0}})
    );
    assert_eq!(last.usage, Some(crate::wire::openai::Usage { prompt_tokens: 849, completion_tokens: 47, total_tokens: 896 }));
    assert!(chunks[..chunks.len() - 1].iter().all(|c| c.usage.is_none()));
    assert!(chunks[..chunks.len() - 1].iter().all(|c| to_value(&chunk_json(c))["usage"].is_null()), "usage: null until the last");
}

#[test]
fn without_include_usage_the_usage_rides_on_the_finish_chunk() {
    let sse = fixture!("stream_text.sse").as_bytes();
    let (chunks, _) = translate_stream(sse, 100, false);
    let (text, calls, finish) = assemble(&chunks);
    assert_eq!((text.as_str(), calls.len(), finish.as_deref()), ("Hello!", 0, Some("stop")));
    let last = chunks.last().unwrap();
    assert!(last.finish);
    assert_eq!(last.usage, Some(crate::wire::openai::Usage { prompt_tokens: 25, completion_tokens: 15, total_tokens: 40 }));
    assert!(chunks.iter().all(|c| to_value(&chunk_json(c)).get("usage").is_none()), "no usage key the caller did not ask for");
    let contents: Vec<bool> = chunks.iter().map(|c| c.content).collect();
    assert_eq!(contents, [false, true, true, false]);
}

#[test]
fn crlf_line_endings_translate_the_same() {
    let lf = fixture!("stream_tool_use.sse");
    let crlf = lf.replace('\n', "\r\n");
    assert_eq!(translate_stream(crlf.as_bytes(), 333, true).0, translate_stream(lf.as_bytes(), lf.len(), true).0);
}

#[test]
fn an_error_event_is_the_streams_error() {
    let sse = fixture!("stream_error_overloaded.sse").as_bytes();
    let (chunks, err) = translate_stream(sse, 10, false);
    assert_eq!(chunks.len(), 1, "only the role preamble came before it");
    assert!(!chunks[0].content);
    assert_eq!(err, Some(ErrorBody { kind: "overloaded_error".into(), message: "Overloaded".into() }));
}

#[test]
fn a_tool_call_without_input_fragments_still_gets_json_arguments() {
    let mut t = ToOpenAi::new("chat", false, 1);
    let events = [
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "m", "usage": {"input_tokens": 1, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_2", "name": "at", "input": {"tz": "UTC"}}}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}),
        json!({"type": "message_stop"}),
    ];
    let mut chunks = Vec::new();
    for e in events {
        chunks.extend(t.on_event(serde_json::from_value(e).unwrap()).unwrap());
    }
    let (_, calls, finish) = assemble(&chunks);
    assert_eq!(calls, [("toolu_1".into(), "now".into(), "{}".into()), ("toolu_2".into(), "at".into(), r#"{"tz":"UTC"}"#.into())]);
    assert_eq!(finish.as_deref(), Some("tool_calls"));
    assert!(t.finished());
}

#[test]
fn thinking_streams_as_reasoning_content_and_unknown_events_are_ignored() {
    let mut t = ToOpenAi::new("chat", false, 1);
    let start = json!({"type": "message_start", "message": {"id": "m", "content": [], "usage": {"input_tokens": 1, "output_tokens": 0}}});
    t.on_event(serde_json::from_value(start).unwrap()).unwrap();
    let thinking = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Hmm."}});
    let out = t.on_event(serde_json::from_value(thinking).unwrap()).unwrap();
    assert_eq!(to_value(&chunk_json(&out[0]).choices[0].delta), json!({"reasoning_content": "Hmm."}));
    assert!(out[0].content);
    let novel = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "s"}});
    assert!(t.on_event(serde_json::from_value(novel).unwrap()).unwrap().is_empty());
    let unknown: StreamEvent = serde_json::from_value(json!({"type": "brand_new_event", "x": 1})).unwrap();
    assert_eq!(unknown.name(), "brand_new_event");
    assert!(t.on_event(unknown).unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// OpenAI chunks → Anthropic stream

fn oa_chunk(v: Value) -> ChatCompletionChunk {
    let mut base = json!({"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1, "model": "up"});
    base.as_object_mut().unwrap().extend(v.as_object().unwrap().clone());
    serde_json::from_value(base).unwrap()
}

fn delta(d: Value, finish: Option<&str>) -> ChatCompletionChunk {
    oa_chunk(json!({"choices": [{"index": 0, "delta": d, "finish_reason": finish}]}))
}

/// Builds the final message from events, as the Anthropic SDKs' stream accumulators do.
fn accumulate(events: &[StreamEvent]) -> Message {
    let mut message: Option<Message> = None;
    let mut partial: Vec<String> = Vec::new();
    for ev in events {
        match ev.clone() {
            StreamEvent::MessageStart { message: m } => message = Some(m),
            StreamEvent::ContentBlockStart { index, content_block } => {
                let m = message.as_mut().unwrap();
                assert_eq!(index as usize, m.content.len(), "blocks start in order");
                m.content.push(content_block);
                partial.push(String::new());
            }
            StreamEvent::ContentBlockDelta { index, delta } => {
                let block = &mut message.as_mut().unwrap().content[index as usize];
                match (block, delta) {
                    (ContentBlock::Text(t), BlockDelta::TextDelta { text }) => t.text.push_str(&text),
                    (ContentBlock::ToolUse(_), BlockDelta::InputJsonDelta { partial_json }) => partial[index as usize].push_str(&partial_json),
                    (b, d) => panic!("delta {d:?} for block {b:?}"),
                }
            }
            StreamEvent::ContentBlockStop { index } => {
                if let ContentBlock::ToolUse(u) = &mut message.as_mut().unwrap().content[index as usize] {
                    let json = &partial[index as usize];
                    u.input = if json.is_empty() { json!({}) } else { serde_json::from_str(json).unwrap() };
                }
            }
            StreamEvent::MessageDelta { delta, usage } => {
                let m = message.as_mut().unwrap();
                m.stop_reason = delta.stop_reason;
                merge_usage(&mut m.usage, usage);
            }
            _ => {}
        }
    }
    message.unwrap()
}

#[test]
fn a_chunk_that_continues_the_text_takes_the_fast_path_to_the_same_bytes() {
    fn sse(events: Vec<StreamEvent>) -> Vec<u8> {
        events.iter().flat_map(|e| e.to_sse().to_vec()).collect()
    }
    let raw = |v: Value| {
        let mut base = json!({"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1, "model": "up"});
        base.as_object_mut().unwrap().extend(v.as_object().unwrap().clone());
        base.to_string()
    };
    let text = |t: &str| raw(json!({"choices": [{"index": 0, "delta": {"content": t}, "logprobs": null, "finish_reason": null}]}));
    let mut fast = ToAnthropic::new("chat");
    let mut slow = ToAnthropic::new("chat");
    assert_eq!(fast.text_chunk(text("x").as_bytes()), None, "no text block open yet");
    let first = raw(json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": null}]}));
    for t in [&mut fast, &mut slow] {
        t.on_chunk(&serde_json::from_str(&first).unwrap());
    }
    let mut continuing: Vec<String> = ["Hello", " \"quoted\" \\ back/slash", "line\nbreak\ttab", "\u{1}\u{7f} control", "Zürich 🌤", "\u{2028}"].iter().map(|t| text(t)).collect();
    continuing.push(r#"{"choices":[{"delta":{"content":"caf\u00e9 \/ \ud83c\udf24","role":null,"refusal":null,"reasoning_content":"x"},"finish_reason":null,"index":0}],"id":"c","object":"chat.completion.chunk","created":1,"model":"up","usage":null,"switchyard":null,"x_groq":{"id":"q"}}"#.to_owned());
    for data in &continuing {
        let got = fast.text_chunk(data.as_bytes()).expect("continues the text");
        assert_eq!(got.to_vec(), sse(slow.on_chunk(&serde_json::from_str(data).unwrap())), "{data}");
    }
    let others = [
        text(""),
        raw(json!({"choices": [{"index": 0, "delta": {"content": "end"}, "finish_reason": "stop"}]})),
        raw(json!({"choices": [{"index": 0, "delta": {"refusal": "no"}, "finish_reason": null}]})),
        raw(json!({"choices": [{"index": 0, "delta": {"content": "a", "refusal": "no"}, "finish_reason": null}]})),
        raw(json!({"choices": [{"index": 0, "delta": {"content": "a", "tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": ""}}]}}]})),
        raw(json!({"choices": [{"index": 0, "delta": {"content": "a"}}], "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}})),
        raw(json!({"choices": [{"index": 0, "delta": {"content": "a"}}], "switchyard": {"recovered": true}})),
        raw(json!({"choices": [{"index": 1, "delta": {"content": "a"}}]})),
        raw(json!({"choices": [{"index": 0, "delta": {"content": "a"}}, {"index": 1, "delta": {"content": "b"}}]})),
        raw(json!({"choices": []})),
        "not json".to_owned(),
    ];
    for other in &others {
        assert_eq!(fast.text_chunk(other.as_bytes()), None, "{other}");
    }
    // Once a tool block is open, text goes the whole way again (it opens a new block).
    let tool = raw(json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}]}}]}));
    for t in [&mut fast, &mut slow] {
        t.on_chunk(&serde_json::from_str(&tool).unwrap());
    }
    assert_eq!(fast.text_chunk(text("after").as_bytes()), None);
    for t in [&mut fast, &mut slow] {
        t.on_chunk(&serde_json::from_str(&text("after")).unwrap());
    }
    let data = text("in the new block");
    let got = fast.text_chunk(data.as_bytes()).expect("the new text block continues");
    assert_eq!(got.to_vec(), sse(slow.on_chunk(&serde_json::from_str(&data).unwrap())), "the frame names the new block's index");
}

#[test]
fn openai_chunks_become_anthropics_event_sequence() {
    let chunks = [
        delta(json!({"role": "assistant", "content": ""}), None),
        delta(json!({"content": "Let me "}), None),
        delta(json!({"content": "check."}), None),
        delta(json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}), None),
        delta(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}), None),
        delta(json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Zürich\"}"}}]}), None),
        delta(json!({"tool_calls": [{"index": 1, "id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]}), None),
        delta(json!({}), Some("tool_calls")),
        oa_chunk(json!({"choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42, "prompt_tokens_details": {"cached_tokens": 10}}})),
    ];
    let mut t = ToAnthropic::new("chat");
    let mut events: Vec<StreamEvent> = chunks.iter().flat_map(|c| t.on_chunk(c)).collect();
    events.extend(t.finish());
    let names: Vec<&str> = events.iter().map(StreamEvent::name).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
            "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
            "content_block_start", "content_block_delta", "content_block_stop",
            "message_delta", "message_stop"
        ]
    );
    let sse: Vec<u8> = events.iter().flat_map(|e| e.to_sse().to_vec()).collect();
    insta::assert_snapshot!("openai_chunks_to_anthropic_sse", String::from_utf8(sse).unwrap());
    let m = accumulate(&events);
    assert_eq!(m.model, "chat");
    assert_eq!(m.id, "msg_chatcmpl-9");
    assert_eq!(
        to_value(&m.content),
        json!([{"type": "text", "text": "Let me check."},
               {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Zürich"}},
               {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}}])
    );
    assert_eq!(m.stop_reason.as_deref(), Some("tool_use"));
    assert_eq!((m.usage.input_tokens, m.usage.cache_read_input_tokens, m.usage.output_tokens), (20, Some(10), 12));
}

#[test]
fn servers_repeating_the_tool_call_id_on_every_delta_get_one_block() {
    let mut t = ToAnthropic::new("chat");
    let mut events = Vec::new();
    for args in ["{\"a\"", ":1}"] {
        events.extend(t.on_chunk(&delta(json!({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": args}}]}), None)));
    }
    events.extend(t.finish());
    let m = accumulate(&events);
    assert_eq!(to_value(&m.content), json!([{"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}}]));
    assert_eq!(m.stop_reason.as_deref(), Some("end_turn"));
}

#[test]
fn an_empty_stream_still_starts_and_stops_and_learns_usage_from_the_gateway() {
    let mut t = ToAnthropic::new("chat");
    t.fallback_usage(crate::wire::openai::Usage { prompt_tokens: 3, completion_tokens: 0, total_tokens: 3 });
    let events = t.finish();
    let names: Vec<&str> = events.iter().map(StreamEvent::name).collect();
    assert_eq!(names, ["message_start", "message_delta", "message_stop"]);
    assert_eq!(accumulate(&events).usage.input_tokens, 3);
}

#[test]
fn an_anthropic_stream_survives_the_round_trip_through_openai_chunks() {
    let sse = fixture!("stream_tool_use.sse").as_bytes();
    let mut parser = SseParser::new();
    parser.push(sse);
    let mut original = Vec::new();
    while let Some(ev) = parser.next_event().unwrap() {
        original.push(serde_json::from_slice::<StreamEvent>(&ev.data).unwrap());
    }
    let mut to_openai = ToOpenAi::new("chat", true, 1);
    let mut back = ToAnthropic::new("chat");
    let mut events = Vec::new();
    for ev in &original {
        for c in to_openai.on_event(ev.clone()).unwrap() {
            events.extend(back.on_chunk(&chunk_json(&c)));
        }
    }
    events.extend(back.finish());
    let (a, b) = (accumulate(&original), accumulate(&events));
    assert_eq!(to_value(&b.content), to_value(&a.content), "text and tool input come back whole");
    assert_eq!(b.stop_reason, a.stop_reason);
    assert_eq!((b.usage.input_tokens, b.usage.output_tokens), (a.usage.input_tokens, a.usage.output_tokens));
}

// ---------------------------------------------------------------------------------------------
// Helpers

#[test]
fn relabelling_replaces_only_the_model() {
    let start = r#"{"type":"message_start","message":{"model":"claude-x","id":"msg_1","content":[{"model":"inner"}]}}"#;
    assert_eq!(
        &relabel_model(start.as_bytes(), "chat").unwrap()[..],
        br#"{"type":"message_start","message":{"model":"chat","id":"msg_1","content":[{"model":"inner"}]}}"#
    );
    let msg = fixture!("message_text.json").trim_end();
    let out = relabel_model(msg.as_bytes(), "a\"b").unwrap();
    assert_eq!(String::from_utf8(out.to_vec()).unwrap(), msg.replace("claude-sonnet-4-5-20250929", "a\\\"b"));
    assert!(relabel_model(b"{\"type\":\"ping\"}", "x").is_none());
}

#[test]
fn error_types_follow_anthropics_table() {
    for (status, kind) in [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (422, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (504, "api_error"),
        (529, "overloaded_error"),
    ] {
        assert_eq!(error_type_for_status(status), kind, "{status}");
    }
}

#[test]
fn error_bodies_round_trip() {
    let e: ErrorResponse = serde_json::from_str(fixture!("error_overloaded.json")).unwrap();
    assert_eq!(e, ErrorResponse::new("overloaded_error", "Overloaded"));
    assert_eq!(to_value(&ErrorResponse::new("api_error", "x")), json!({"type": "error", "error": {"type": "api_error", "message": "x"}}));
}

// ---------------------------------------------------------------------------------------------
// The native body beside the canonical request

#[test]
fn a_native_body_rides_along_and_only_its_model_is_rewritten() {
    use crate::wire::Format;
    use crate::wire::openai::{ChatRequest, NativeBody};
    let native = r#"{"max_tokens":5, "model" : "chat","messages":[{"role":"user","content":"caf\u00e9"}],"top_k":3}"#;
    let body = NativeBody::parse(Format::AnthropicMessages, bytes::Bytes::from_static(native.as_bytes())).unwrap();
    assert_eq!(
        &body.body_with_model("claude-\"x\"")[..],
        br#"{"max_tokens":5, "model" : "claude-\"x\"","messages":[{"role":"user","content":"caf\u00e9"}],"top_k":3}"#
    );
    assert!(NativeBody::parse(Format::AnthropicMessages, bytes::Bytes::from_static(b"{\"messages\":[]}")).is_err(), "model is required");
    let canonical = ChatRequest::parse(bytes::Bytes::from_static(br#"{"model":"chat","messages":[]}"#)).unwrap();
    assert!(canonical.native_in(Format::AnthropicMessages).is_none(), "the OpenAI path carries none");
    let with = canonical.with_native(body);
    assert!(with.native_in(Format::AnthropicMessages).is_some());
    assert!(with.native_in(Format::OpenAiChat).is_none());
}

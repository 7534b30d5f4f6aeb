//! Translation tests: OpenAI requests → Gemini, Gemini answers and streams → OpenAI, against the
//! wire fixtures of the fake Gemini upstream (`switchyard-fakes/fixtures/gemini`).

use serde_json::{Value, json};

use super::stream::{SseTranslator, StreamError};
use crate::wire::chunk::Chunk;
use super::*;
use crate::wire::openai::types::ChatCompletionRequest;

fn fixture(name: &str) -> String {
    let path = format!("{}/../switchyard-fakes/fixtures/gemini/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn request(v: Value) -> ChatCompletionRequest {
    serde_json::from_value(v).expect("a valid OpenAI request")
}

/// The Gemini request for an OpenAI request, as JSON.
fn translate(v: Value) -> Value {
    let req = to_gemini_request(&request(v), RequestSettings::default()).expect("translatable");
    serde_json::to_value(req).unwrap()
}

fn translate_err(v: Value) -> TranslateError {
    to_gemini_request(&request(v), RequestSettings::default()).expect_err("not translatable")
}

fn meta() -> AnswerMeta {
    AnswerMeta { alias: "chat".into(), id: "chatcmpl-fallback".into(), created: 1_700_000_000, call_ids: CallIds::new("") }
}

/// The OpenAI completion for a Gemini body, as JSON, plus its usage summary.
fn complete(body: &str) -> (Value, Option<Usage>) {
    let (bytes, usage) = completion_body(body.as_bytes(), &mut meta()).expect("translatable");
    (serde_json::from_slice(&bytes).unwrap(), usage)
}

const USER_HI: &str = "Say hi";

// ------------------------------------------------------------------------------------------
// Requests
// ------------------------------------------------------------------------------------------

#[test]
fn a_rich_conversation_translates_part_by_part() {
    let g = translate(json!({
        "model": "chat",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp?size=2"}},
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}
            ]},
            {"role": "user", "content": "And quickly."},
            {"role": "assistant", "content": "A cat and a dog."},
            {"role": "user", "content": USER_HI}
        ],
        "temperature": 0.2, "top_p": 0.9, "max_tokens": 50, "max_completion_tokens": 100,
        "stop": ["END"], "n": 2, "seed": 7, "presence_penalty": 0.1, "frequency_penalty": 0.3,
        "response_format": {"type": "json_object"}, "reasoning_effort": "low", "top_k": 40,
        "user": "u-1", "stream_options": {"include_usage": true}, "parallel_tool_calls": true
    }));
    insta::assert_json_snapshot!("request_rich_conversation", g);
    assert_eq!(g["systemInstruction"], json!({"parts": [{"text": "Be brief."}, {"text": "Answer in English."}]}));
    let contents = g["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 3, "consecutive user messages merge: {g:#}");
    let roles: Vec<&str> = contents.iter().map(|c| c["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "model", "user"]);
    assert_eq!(
        contents[0]["parts"],
        json!([
            {"text": "What is in these?"},
            {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
            {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp?size=2"}},
            {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
            {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
            {"text": "And quickly."}
        ])
    );
    assert_eq!(
        g["generationConfig"],
        json!({"temperature": 0.2, "topP": 0.9, "topK": 40, "maxOutputTokens": 100, "stopSequences": ["END"],
               "candidateCount": 2, "seed": 7, "presencePenalty": 0.1, "frequencyPenalty": 0.3,
               "responseMimeType": "application/json", "thinkingConfig": {"thinkingBudget": 1024}})
    );
    assert!(g.get("tools").is_none() && g.get("toolConfig").is_none() && g.get("safetySettings").is_none());
}

#[test]
fn sampling_settings_map_one_by_one() {
    let base = || json!({"model": "m", "messages": [{"role": "user", "content": USER_HI}]});
    assert!(translate(base()).get("generationConfig").is_none(), "nothing set, nothing sent");
    let mut r = base();
    r["max_tokens"] = json!(12);
    r["stop"] = json!("STOP HERE");
    assert_eq!(translate(r)["generationConfig"], json!({"maxOutputTokens": 12, "stopSequences": ["STOP HERE"]}));
    let mut r = base();
    r["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "out", "strict": true, "schema": {
        "type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"], "additionalProperties": false}}});
    assert_eq!(
        translate(r)["generationConfig"],
        json!({"responseMimeType": "application/json", "responseSchema": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}})
    );
    for (effort, budget) in [("none", 0), ("minimal", 1024), ("medium", 8192), ("high", 24576)] {
        let mut r = base();
        r["reasoning_effort"] = json!(effort);
        assert_eq!(translate(r)["generationConfig"]["thinkingConfig"]["thinkingBudget"], budget, "{effort}");
    }
    let mut r = base();
    r["response_format"] = json!({"type": "text"});
    assert!(translate(r).get("generationConfig").is_none());
}

#[test]
fn safety_settings_pass_through() {
    let settings = [json!({"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"})];
    let req = request(json!({"model": "m", "messages": [{"role": "user", "content": USER_HI}]}));
    let g = to_gemini_request(&req, RequestSettings { safety_settings: &settings }).unwrap();
    assert_eq!(serde_json::to_value(g).unwrap()["safetySettings"], json!(settings));
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "Weather now", "strict": true, "parameters": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "City", "format": "uri", "minLength": 1},
            "unit": {"anyOf": [{"type": "string", "enum": ["c", "f"]}, {"type": "null"}], "default": null},
            "when": {"type": ["string", "null"], "format": "date-time"},
            "kind": {"const": "now"},
            "place": {"$ref": "#/$defs/Place", "description": "Where"},
            "tags": {"type": "array", "items": {"type": "string", "examples": ["x"]}, "maxItems": 3},
            "level": {"type": "integer", "enum": [1, 2, 3]},
            "either": {"oneOf": [{"type": "string"}, {"type": "integer"}]}
        },
        "required": ["city", "ghost"],
        "additionalProperties": false,
        "$defs": {"Place": {"type": "object", "title": "Place", "properties": {"lat": {"type": "number"}}, "additionalProperties": false}}
    }}})
}

#[test]
fn tools_become_one_declaration_list_with_schemas_gemini_accepts() {
    let g = translate(json!({
        "model": "m",
        "messages": [{"role": "user", "content": "weather?"}],
        "tools": [weather_tool(), {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}},
                  {"type": "function", "function": {"name": "ping"}}]
    }));
    insta::assert_json_snapshot!("request_tools", g["tools"]);
    let decls = g["tools"][0]["functionDeclarations"].as_array().unwrap();
    assert_eq!(g["tools"].as_array().unwrap().len(), 1);
    assert_eq!(decls.len(), 3);
    let params = &decls[0]["parameters"];
    assert_eq!(
        *params,
        json!({
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City", "minLength": 1},
                "unit": {"type": "string", "enum": ["c", "f"], "nullable": true, "default": null},
                "when": {"type": "string", "nullable": true, "format": "date-time"},
                "kind": {"type": "string", "enum": ["now"]},
                "place": {"type": "object", "title": "Place", "properties": {"lat": {"type": "number"}}, "description": "Where"},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
                "level": {"type": "integer"},
                "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]}
            },
            "required": ["city"]
        })
    );
    assert!(decls[1].get("parameters").is_none(), "an object without properties is no parameters at all");
    assert!(decls[2].get("parameters").is_none());
    assert_eq!(decls[0]["description"], "Weather now");
}

#[test]
fn recursive_refs_terminate() {
    let schema = json!({"type": "object", "properties": {"node": {"$ref": "#/$defs/Node"}},
        "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}}});
    let cleaned = schema::response_schema(&schema).unwrap();
    let depth = cleaned.to_string().matches("\"next\"").count();
    assert!(depth > 3 && depth < 40, "{depth}");
}

#[test]
fn tool_choice_modes() {
    let with = |choice: Value| {
        translate(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [weather_tool()], "tool_choice": choice}))["toolConfig"]
            .clone()
    };
    assert_eq!(with(json!("auto")), json!({"functionCallingConfig": {"mode": "AUTO"}}));
    assert_eq!(with(json!("none")), json!({"functionCallingConfig": {"mode": "NONE"}}));
    assert_eq!(with(json!("required")), json!({"functionCallingConfig": {"mode": "ANY"}}));
    assert_eq!(
        with(json!({"type": "function", "function": {"name": "get_weather"}})),
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}})
    );
    let e = translate_err(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "sometimes"}));
    assert!(matches!(e, TranslateError::Invalid(ref m) if m.contains("sometimes")), "{e:?}");
}

#[test]
fn tool_results_name_their_function_and_merge_into_one_user_turn() {
    let g = translate(json!({"model": "m", "messages": [
        {"role": "user", "content": "weather in two cities?"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Lisbon\"}"}},
            {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}}
        ]},
        {"role": "tool", "tool_call_id": "call_b", "content": "[1, 2]"},
        {"role": "tool", "tool_call_id": "call_a", "content": "{\"temp\": 21}"},
        {"role": "tool", "tool_call_id": "call_a", "content": [{"type": "text", "text": "sunny"}]},
        {"role": "user", "content": "thanks"}
    ]}));
    let contents = g["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 3, "{g:#}");
    assert_eq!(
        contents[1],
        json!({"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Lisbon"}}, "thoughtSignature": SKIP_SIGNATURE},
            {"functionCall": {"name": "get_time", "args": {}}}
        ]})
    );
    assert_eq!(
        contents[2],
        json!({"role": "user", "parts": [
            {"functionResponse": {"name": "get_time", "response": {"content": [1, 2]}}},
            {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
            {"functionResponse": {"name": "get_weather", "response": {"content": "sunny"}}},
            {"text": "thanks"}
        ]})
    );
}

#[test]
fn arguments_from_other_providers_are_kept_even_when_not_objects() {
    assert_eq!(arguments_object(Some("{\"a\":1}")), json!({"a": 1}));
    assert_eq!(arguments_object(Some("  ")), json!({}));
    assert_eq!(arguments_object(None), json!({}));
    assert_eq!(arguments_object(Some("[1]")), json!({"value": [1]}));
    assert_eq!(arguments_object(Some("{broken")), json!({"arguments": "{broken"}));
}

#[test]
fn legacy_function_messages_translate() {
    let g = translate(json!({"model": "m", "messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": null, "function_call": {"name": "f", "arguments": "{}"}},
        {"role": "function", "name": "f", "content": "done"}
    ]}));
    assert_eq!(g["contents"][1]["parts"][0]["functionCall"]["name"], "f");
    assert_eq!(g["contents"][2]["parts"][0]["functionResponse"], json!({"name": "f", "response": {"content": "done"}}));
}

#[test]
fn malformed_and_unsupported_requests_are_told_apart() {
    let msgs = |m: Value| json!({"model": "m", "messages": m});
    let e = translate_err(msgs(json!([{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "nope", "content": "r"}])));
    assert!(matches!(e, TranslateError::Invalid(ref m) if m.contains("\"nope\"")), "{e:?}");
    assert!(matches!(translate_err(msgs(json!([{"role": "robot", "content": "x"}]))), TranslateError::Invalid(_)));
    let file_id = msgs(json!([{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-abc"}}]}]));
    assert!(matches!(translate_err(file_id), TranslateError::Unsupported(ref m) if m.contains("file_id")));
    let odd = msgs(json!([{"role": "user", "content": [{"type": "video_url", "video_url": {"url": "x"}}]}]));
    assert!(matches!(translate_err(odd), TranslateError::Unsupported(ref m) if m.contains("video_url")));
    let ftp = msgs(json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]));
    assert!(matches!(translate_err(ftp), TranslateError::Unsupported(_)));
    let custom = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "custom", "function": {"name": "x"}}]});
    assert!(matches!(translate_err(custom), TranslateError::Unsupported(_)));
}

#[test]
fn empty_turns_are_dropped() {
    let g = translate(json!({"model": "m", "messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}, {"role": "user", "content": "x"}]}));
    assert_eq!(g["contents"], json!([{"role": "user", "parts": [{"text": "x"}]}]));
}

// ------------------------------------------------------------------------------------------
// Thought signatures across turns (LESSONS #11)
// ------------------------------------------------------------------------------------------

/// The assistant message a client sends back: the answer's message as it came over the wire.
fn echo_assistant(completion: &Value) -> Value {
    completion["choices"][0]["message"].clone()
}

#[test]
fn the_thought_signature_survives_two_turns() {
    let turn1 = fixture("generate-content-function-call.json");
    let sent_signature = serde_json::from_str::<Value>(&turn1).unwrap()["candidates"][0]["content"]["parts"][0]["thoughtSignature"].clone();
    let (completion, _) = complete(&turn1);
    let assistant = echo_assistant(&completion);
    assert_eq!(assistant["tool_calls"][0]["extra_content"], json!({"google": {"thought_signature": sent_signature}}));
    let id = assistant["tool_calls"][0]["id"].as_str().unwrap().to_owned();

    let g = translate(json!({"model": "m", "messages": [
        {"role": "user", "content": "weather in Lisbon?"},
        assistant,
        {"role": "tool", "tool_call_id": id, "content": "{\"temp\": 21}"}
    ]}));
    assert_eq!(
        g["contents"][1],
        json!({"role": "model", "parts": [{
            "functionCall": {"name": "get_weather", "args": {"city": "Lisbon", "unit": "celsius"}},
            "thoughtSignature": sent_signature
        }]})
    );
    assert_eq!(g["contents"][2]["parts"][0]["functionResponse"]["name"], "get_weather");
}

#[test]
fn the_thought_signature_survives_a_streamed_turn_too() {
    let chunks = stream_all(&fixture("stream-function-call.sse"), false);
    let call = chunks.iter().find_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0).cloned()).expect("a tool call delta");
    let signature = call["extra_content"]["google"]["thought_signature"].as_str().unwrap();
    assert!(signature.starts_with("CiwB"));
    // A client assembles the delta into an assistant message and sends it back.
    let assistant = json!({"role": "assistant", "content": null, "tool_calls": [{
        "id": call["id"], "type": "function", "function": call["function"], "extra_content": call["extra_content"]}]});
    let g = translate(json!({"model": "m", "messages": [{"role": "user", "content": "x"}, assistant,
        {"role": "tool", "tool_call_id": call["id"], "content": "ok"}]}));
    assert_eq!(g["contents"][1]["parts"][0]["thoughtSignature"], signature);
}

#[test]
fn calls_without_signature_get_the_documented_skip_value_once_per_turn() {
    let g = translate(json!({"model": "m", "messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [
            {"id": "1", "type": "function", "function": {"name": "a", "arguments": "{}"}},
            {"id": "2", "type": "function", "function": {"name": "b", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "1", "content": "r"},
        {"role": "tool", "tool_call_id": "2", "content": "r"},
        {"role": "assistant", "content": "thinking aloud", "tool_calls": [
            {"id": "3", "type": "function", "function": {"name": "a", "arguments": "{}"}, "extra_content": {"google": {"thought_signature": "real"}}},
            {"id": "4", "type": "function", "function": {"name": "b", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "3", "content": "r"},
        {"role": "tool", "tool_call_id": "4", "content": "r"}
    ]}));
    let sigs = |i: usize| -> Vec<Value> { g["contents"][i]["parts"].as_array().unwrap().iter().map(|p| p["thoughtSignature"].clone()).collect() };
    assert_eq!(sigs(1), [json!(SKIP_SIGNATURE), Value::Null]);
    assert_eq!(sigs(3), [Value::Null, json!("real"), Value::Null], "real signatures are never touched");
}

// ------------------------------------------------------------------------------------------
// Responses
// ------------------------------------------------------------------------------------------

#[test]
fn a_text_answer_with_thinking_tokens() {
    let (c, usage) = complete(&fixture("generate-content.json"));
    insta::assert_json_snapshot!("completion_text", c);
    assert_eq!(c["id"], "chatcmpl-kPxIaM2sLo2Z1dkP4sWg0Ac", "the id carries Gemini's responseId");
    assert_eq!(c["object"], "chat.completion");
    assert_eq!(c["model"], "chat");
    assert_eq!(c["choices"][0]["message"], json!({"role": "assistant", "content": "A gateway sends each request to the first healthy provider."}));
    assert_eq!(c["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        c["usage"],
        json!({"prompt_tokens": 9, "completion_tokens": 403, "total_tokens": 412,
               "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 392}})
    );
    assert_eq!(usage, Some(Usage { prompt_tokens: 9, completion_tokens: 403, total_tokens: 412 }));
}

#[test]
fn a_function_call_answer() {
    let (c, _) = complete(&fixture("generate-content-function-call.json"));
    insta::assert_json_snapshot!("completion_function_call", c);
    let message = &c["choices"][0]["message"];
    assert_eq!(message["content"], Value::Null, "content is null, not absent");
    assert!(message.as_object().unwrap().contains_key("content"));
    assert_eq!(message["tool_calls"][0]["id"], "call_0");
    assert_eq!(message["tool_calls"][0]["type"], "function");
    assert_eq!(message["tool_calls"][0]["function"], json!({"name": "get_weather", "arguments": "{\"city\":\"Lisbon\",\"unit\":\"celsius\"}"}));
    assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
}

#[test]
fn thoughts_are_not_answers_and_upstream_call_ids_are_kept() {
    let body = json!({"candidates": [{"content": {"role": "model", "parts": [
        {"text": "Let me think about the user...", "thought": true},
        {"text": "Answer: "}, {"text": "42"},
        {"functionCall": {"id": "fc-9", "name": "f", "args": {}}}
    ]}, "finishReason": "STOP", "index": 0}]});
    let (c, usage) = complete(&body.to_string());
    assert_eq!(c["choices"][0]["message"]["content"], "Answer: 42");
    assert_eq!(c["choices"][0]["message"]["tool_calls"][0]["id"], "fc-9");
    assert!(c["choices"][0]["message"]["tool_calls"][0].get("extra_content").is_none());
    assert_eq!(c["id"], "chatcmpl-fallback");
    assert!(c.get("usage").is_none() && usage.is_none());
}

#[test]
fn each_finish_reason_maps_to_openais() {
    for (gemini, openai) in [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("IMAGE_SAFETY", "content_filter"),
        ("LANGUAGE", "stop"),
        ("OTHER", "stop"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        ("FINISH_REASON_UNSPECIFIED", "stop"),
    ] {
        let body = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "t"}]}, "finishReason": gemini}]});
        let (c, _) = complete(&body.to_string());
        assert_eq!(c["choices"][0]["finish_reason"], openai, "{gemini}");
        let chunks = stream_all(&format!("data: {body}\r\n\r\n"), false);
        assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], openai, "streamed {gemini}");
    }
    assert_eq!(finish_reason(Some("STOP"), true), "tool_calls");
    assert_eq!(finish_reason(Some("MAX_TOKENS"), true), "length");
    assert_eq!(finish_reason(None, false), "stop");
}

#[test]
fn a_safety_stop_and_a_blocked_prompt_are_content_filter_answers() {
    let (c, usage) = complete(&fixture("safety.json"));
    assert_eq!(c["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(c["choices"][0]["message"]["content"], Value::Null);
    assert_eq!(usage.unwrap().prompt_tokens, 12);
    let (c, usage) = complete(&fixture("prompt-blocked.json"));
    insta::assert_json_snapshot!("completion_prompt_blocked", c);
    assert_eq!(c["choices"].as_array().unwrap().len(), 1);
    assert_eq!(c["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(usage, Some(Usage { prompt_tokens: 12, completion_tokens: 0, total_tokens: 12 }));
}

#[test]
fn several_candidates_become_several_choices() {
    let body = json!({"candidates": [
        {"content": {"role": "model", "parts": [{"text": "a"}]}, "finishReason": "STOP", "index": 0},
        {"content": {"role": "model", "parts": [{"text": "b"}]}, "finishReason": "MAX_TOKENS", "index": 1}]});
    let (c, _) = complete(&body.to_string());
    assert_eq!(c["choices"][1], json!({"index": 1, "message": {"role": "assistant", "content": "b"}, "finish_reason": "length", "logprobs": null}));
}

#[test]
fn cached_and_tool_prompt_tokens_count_as_prompt() {
    let u = usage(&UsageMetadata {
        prompt_token_count: 100,
        candidates_token_count: 5,
        thoughts_token_count: 0,
        cached_content_token_count: 80,
        tool_use_prompt_token_count: 10,
        total_token_count: 0,
    });
    assert_eq!((u.prompt_tokens, u.completion_tokens, u.total_tokens), (110, 5, 115));
    assert_eq!(u.prompt_tokens_details.unwrap().cached_tokens, 80);
}

#[test]
fn bodies_that_are_not_answers_are_errors() {
    let err = |body: &str| completion_body(body.as_bytes(), &mut meta()).unwrap_err();
    assert!(matches!(err("{}"), NormalizeError::Invalid(_)));
    assert!(matches!(err("not json"), NormalizeError::Invalid(_)));
    match err(&fixture("error-429.json")) {
        NormalizeError::Upstream(m) => assert!(m.starts_with("RESOURCE_EXHAUSTED (429): You exceeded"), "{m}"),
        other => panic!("{other:?}"),
    }
}

// ------------------------------------------------------------------------------------------
// Streams
// ------------------------------------------------------------------------------------------

fn translator(include_usage: bool) -> SseTranslator {
    SseTranslator::new(meta(), include_usage)
}

/// Every chunk of a whole SSE body.
fn run(sse: &str, include_usage: bool) -> Result<Vec<Chunk>, StreamError> {
    let mut t = translator(include_usage);
    let mut out = t.push(sse.as_bytes())?;
    out.extend(t.end()?);
    Ok(out)
}

fn stream_all(sse: &str, include_usage: bool) -> Vec<Value> {
    run(sse, include_usage).unwrap().iter().map(|c| serde_json::from_slice(&c.data).unwrap()).collect()
}

#[test]
fn a_text_stream_becomes_preamble_deltas_and_finish() {
    let out = run(&fixture("stream.sse"), false).unwrap();
    let chunks: Vec<Value> = out.iter().map(|c| serde_json::from_slice(&c.data).unwrap()).collect();
    insta::assert_json_snapshot!("stream_text", chunks);
    assert_eq!(chunks.len(), 5);
    assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "Failover keeps answers coming when a provider fails.");
    assert_eq!(chunks[4]["choices"][0], json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}));
    for c in &chunks {
        assert_eq!(c["id"], "chatcmpl-Zq9JaKv3Ka6F1dkP9p2rwAQ");
        assert_eq!(c["model"], "chat");
        assert_eq!(c["object"], "chat.completion.chunk");
        assert!(c.get("usage").is_none(), "no usage key without include_usage");
    }
    let flags: Vec<(bool, bool)> = out.iter().map(|c| (c.content, c.finish)).collect();
    assert_eq!(flags, [(false, false), (true, false), (true, false), (true, false), (false, true)]);
    // The gateway learns the usage from the last chunk anyway.
    assert_eq!(out.last().unwrap().usage, Some(Usage { prompt_tokens: 7, completion_tokens: 9, total_tokens: 16 }));
    assert!(out[..4].iter().all(|c| c.usage.is_none()));
}

#[test]
fn include_usage_adds_the_usage_chunk_and_nulls() {
    let out = run(&fixture("stream.sse"), true).unwrap();
    let chunks: Vec<Value> = out.iter().map(|c| serde_json::from_slice(&c.data).unwrap()).collect();
    assert_eq!(chunks.len(), 6);
    for c in &chunks[..5] {
        assert_eq!(c["usage"], Value::Null, "{c}");
        assert!(c.as_object().unwrap().contains_key("usage"));
    }
    let last = &chunks[5];
    assert_eq!(last["choices"], json!([]));
    assert_eq!(
        last["usage"],
        json!({"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16,
               "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}})
    );
    assert_eq!(out[5].usage, Some(Usage { prompt_tokens: 7, completion_tokens: 9, total_tokens: 16 }));
    assert!(!out[5].content && !out[5].finish);
}

#[test]
fn a_streamed_function_call_is_one_whole_delta() {
    let chunks = stream_all(&fixture("stream-function-call.sse"), false);
    insta::assert_json_snapshot!("stream_function_call", chunks);
    assert_eq!(chunks.len(), 3);
    let call = &chunks[1]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(call["index"], 0);
    assert_eq!(call["id"], "call_0");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"], json!({"name": "get_weather", "arguments": "{\"city\":\"Lisbon\"}"}));
    assert_eq!(chunks[2]["choices"][0]["finish_reason"], "tool_calls");
}

#[test]
fn several_streamed_calls_get_successive_indexes() {
    let event = |parts: Value, finish: Option<&str>| {
        let mut c = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        if let Some(f) = finish {
            c["finishReason"] = json!(f);
        }
        format!("data: {}\r\n\r\n", json!({"candidates": [c]}))
    };
    let sse = [
        event(json!([{"text": "Checking both."}]), None),
        event(json!([{"functionCall": {"name": "a", "args": {"x": 1}}, "thoughtSignature": "s1"}, {"functionCall": {"name": "b", "args": {}}}]), None),
        event(json!([{"functionCall": {"name": "c"}}]), Some("STOP")),
    ]
    .concat();
    let chunks = stream_all(&sse, false);
    let calls: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0)).collect();
    let indexes: Vec<i64> = calls.iter().map(|c| c["index"].as_i64().unwrap()).collect();
    let ids: Vec<&str> = calls.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(indexes, [0, 1, 2]);
    assert_eq!(ids, ["call_0", "call_1", "call_2"]);
    assert_eq!(calls[0]["extra_content"]["google"]["thought_signature"], "s1");
    assert_eq!(calls[2]["function"]["arguments"], "{}");
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "tool_calls");
}

#[test]
fn a_blocked_prompt_streams_as_a_content_filter_finish() {
    let compact: Value = serde_json::from_str(&fixture("prompt-blocked.json")).unwrap();
    let out = run(&format!("data: {compact}\r\n\r\n"), false).unwrap();
    assert_eq!(out.len(), 2);
    assert!(out[1].finish && !out[1].content);
    let last: Value = serde_json::from_slice(&out[1].data).unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(out[1].usage.unwrap().prompt_tokens, 12);
}

#[test]
fn a_stream_without_finish_reason_fails() {
    let sse = fixture("stream.sse");
    let without_last: String = sse.split_inclusive("\r\n\r\n").take(2).collect();
    assert_eq!(run(&without_last, false).unwrap_err(), StreamError::Incomplete);
    assert_eq!(run("", false).unwrap_err(), StreamError::Incomplete);
}

#[test]
fn error_events_and_garbage_fail_the_stream() {
    let error = "data: {\"error\": {\"code\": 503,\"message\": \"The model is overloaded.\",\"status\": \"UNAVAILABLE\"}}\r\n\r\n";
    let mut t = translator(false);
    let first: String = fixture("stream.sse").split_inclusive("\r\n\r\n").take(1).collect();
    assert_eq!(t.push(first.as_bytes()).unwrap().len(), 2);
    assert_eq!(t.push(error.as_bytes()).unwrap_err(), StreamError::Upstream("UNAVAILABLE (503): The model is overloaded.".into()));
    assert!(matches!(run("data: [DONE]\r\n\r\n", false), Err(StreamError::Invalid(_))));
}

#[test]
fn events_after_the_finish_are_ignored() {
    let sse = fixture("stream.sse");
    let last: String = sse.split_inclusive("\r\n\r\n").last().unwrap().to_owned();
    let with_extra = format!("{sse}{last}");
    assert_eq!(run(&with_extra, false).unwrap(), run(&sse, false).unwrap());
}

/// The stream of a test: CRLF fixture events plus one with multi-byte text and LF endings.
fn split_test_stream() -> String {
    let tail = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": " héllo 😀 ünïcode"}]}, "index": 0}]});
    let mut events: Vec<String> = fixture("stream.sse").split_inclusive("\r\n\r\n").map(str::to_owned).collect();
    let last = events.pop().unwrap();
    events.push(format!("data:{tail}\n\n"));
    events.push(last);
    events.concat()
}

#[test]
fn sse_split_at_every_byte_boundary_gives_the_same_chunks() {
    let sse = split_test_stream();
    let whole = run(&sse, true).unwrap();
    assert_eq!(whole.len(), 7);
    let text: String = whole.iter().filter_map(|c| serde_json::from_slice::<Value>(&c.data).ok()?["choices"][0]["delta"]["content"].as_str().map(str::to_owned)).collect();
    assert!(text.ends_with(" héllo 😀 ünïcode") || text.contains("héllo 😀"), "{text}");
    let bytes = sse.as_bytes();
    for cut in 0..=bytes.len() {
        let mut t = translator(true);
        let mut got = t.push(&bytes[..cut]).unwrap();
        got.extend(t.push(&bytes[cut..]).unwrap());
        got.extend(t.end().unwrap());
        assert_eq!(got, whole, "split at byte {cut}");
    }
}

#[test]
fn sse_fed_byte_by_byte_gives_the_same_chunks() {
    let sse = split_test_stream();
    let whole = run(&sse, false).unwrap();
    let mut t = translator(false);
    let mut got = Vec::new();
    for b in sse.as_bytes() {
        got.extend(t.push(std::slice::from_ref(b)).unwrap());
    }
    got.extend(t.end().unwrap());
    assert_eq!(got, whole);
}

#[test]
fn a_last_event_without_its_blank_line_still_counts() {
    let sse = fixture("stream.sse");
    let trimmed = sse.trim_end_matches("\r\n");
    assert_eq!(run(trimmed, false).unwrap(), run(&sse, false).unwrap());
}

#[test]
fn a_part_reads_every_member_in_one_pass_and_keeps_the_rest() {
    let raw = r#"{"thought":true,"text":"t","thoughtSignature":"sig","executableCode":{"language":"PYTHON","code":"print(1)"},
        "inlineData":{"mimeType":"image/png","data":"AA=="},"fileData":null,"functionCall":{"name":"f","args":{"x":1}},
        "functionResponse":{"name":"f","response":{"ok":true}},"videoMetadata":{"fps":2}}"#;
    let part: Part = serde_json::from_str(raw).unwrap();
    assert_eq!(part.text.as_deref(), Some("t"));
    assert_eq!(part.thought, Some(true));
    assert_eq!(part.thought_signature.as_deref(), Some("sig"));
    assert_eq!(part.inline_data.as_ref().map(|b| (b.mime_type.as_str(), b.data.as_str())), Some(("image/png", "AA==")));
    assert!(part.file_data.is_none(), "null is no file");
    assert_eq!(part.function_call.as_ref().map(|c| c.name.as_str()), Some("f"));
    assert!(part.function_response.is_some());
    assert_eq!(Value::Object(part.extra.clone()), json!({"executableCode": {"language": "PYTHON", "code": "print(1)"}, "videoMetadata": {"fps": 2}}));
    let mut expected: Value = serde_json::from_str(raw).unwrap();
    expected.as_object_mut().unwrap().remove("fileData");
    assert_eq!(serde_json::to_value(&part).unwrap(), expected, "serializes back to what was read");
    assert_eq!(serde_json::from_str::<Part>("{}").unwrap(), Part::default());
    let twice = serde_json::from_str::<Part>(r#"{"text":"a","text":"b"}"#).unwrap_err();
    assert!(twice.to_string().contains("duplicate field `text`"), "{twice}");
    assert!(serde_json::from_str::<Part>(r#"{"text":1}"#).is_err());
}

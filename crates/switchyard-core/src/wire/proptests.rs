//! Property tests for the wire layer: stream framing (SSE, NDJSON) under arbitrary chunking, the
//! JSON scanner, the `model` rewrite, the OpenAI ⇄ Anthropic request round trip and the
//! Anthropic → OpenAI streaming of tool-call arguments.

use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Map, Value, json};

use super::anthropic::types::{MessagesRequest, StreamEvent};
use super::anthropic::{ToAnthropic, ToOpenAi, to_anthropic, to_openai};
use super::ndjson::NdjsonParser;
use super::openai::ChatRequest;
use super::openai::types::{
    ChatCompletionChunk, ChatCompletionRequest, Content, ContentPart, FunctionCall, FunctionDef, ImageUrl, Message,
    NamedFunction, NamedToolChoice, Stop, Tool, ToolCall, ToolChoice,
};
use super::scan;
use super::sse::{SseEvent, SseParser};

/// `cases` per property, kept modest so the module runs in well under a second; set
/// `PROPTEST_CASES` to search harder.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// `bytes` cut at the (sorted, deduplicated) positions picked by `cuts`.
fn split<'a>(bytes: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
    at.sort_unstable();
    at.dedup();
    let mut out = Vec::new();
    let mut from = 0;
    for c in at {
        out.push(&bytes[from..c]);
        from = c;
    }
    out.push(&bytes[from..]);
    out
}

/// Cuts for text fragments: like [`split`] but only at char boundaries.
fn split_str<'a>(text: &'a str, cuts: &[Index]) -> Vec<&'a str> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|i| {
            let mut c = i.index(text.len() + 1);
            while !text.is_char_boundary(c) {
                c -= 1;
            }
            c
        })
        .collect();
    at.sort_unstable();
    at.dedup();
    let mut out = Vec::new();
    let mut from = 0;
    for c in at {
        out.push(&text[from..c]);
        from = c;
    }
    out.push(&text[from..]);
    out
}

fn cuts() -> impl Strategy<Value = Vec<Index>> {
    prop::collection::vec(any::<Index>(), 0..12)
}

/// Arbitrary JSON, bounded in depth and size. Without `floats`, numbers are integers (serde_json
/// parses floats "best effort" unless its `float_roundtrip` feature is on, so a float can change
/// in its last bit across text; that is not what these properties are about).
fn json_value(floats: bool) -> BoxedStrategy<Value> {
    let number = if floats {
        prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
        ]
        .boxed()
    } else {
        prop_oneof![any::<i64>().prop_map(Value::from), any::<u64>().prop_map(Value::from)].boxed()
    };
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number,
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            json_object(inner),
        ]
    })
    .boxed()
}

fn json_object(values: impl Strategy<Value = Value>) -> impl Strategy<Value = Value> {
    prop::collection::btree_map(any::<String>(), values, 0..6).prop_map(|m| Value::Object(m.into_iter().collect()))
}

// ---------------------------------------------------------------------------------------------
// 1. SSE

#[derive(Clone, Debug)]
struct GenEvent {
    name: Option<String>,
    /// The data lines (each without CR or LF); the event's data is them joined with `\n`.
    lines: Vec<String>,
    /// Per line: write `data:` without the space (only where the line does not start with one).
    tight: Vec<bool>,
    /// A comment line before the event.
    comment: bool,
}

fn sse_event() -> impl Strategy<Value = GenEvent> {
    (
        prop::option::of("[^\r\n]{0,10}"),
        prop::collection::vec("[^\r\n]{0,24}", 1..4),
        prop::collection::vec(any::<bool>(), 4),
        any::<bool>(),
    )
        .prop_map(|(name, lines, tight, comment)| GenEvent {
            name,
            lines,
            tight,
            comment,
        })
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn sse_parser_yields_exactly_the_events_sent(
        events in prop::collection::vec(sse_event(), 0..6),
        endings in prop::collection::vec(0usize..3, 64),
        // How the last event ends: 0 a blank line, 1 only its line end, 2 nothing (`finish`).
        last_end in 0usize..3,
        cuts in cuts(),
    ) {
        let mut k = 0;
        let mut eol = || { k += 1; ["\n", "\r\n", "\r"][endings[k % endings.len()]] };
        let mut text = String::new();
        for (n, e) in events.iter().enumerate() {
            if e.comment {
                text.push_str(": keep-alive");
                text.push_str(eol());
            }
            if let Some(name) = &e.name {
                text.push_str("event: ");
                text.push_str(name);
                text.push_str(eol());
            }
            for (i, line) in e.lines.iter().enumerate() {
                let tight = e.tight[i % e.tight.len()] && !line.starts_with(' ');
                text.push_str(if tight { "data:" } else { "data: " });
                text.push_str(line);
                let last_line = n + 1 == events.len() && i + 1 == e.lines.len();
                if !(last_line && last_end == 2) {
                    text.push_str(eol());
                }
            }
            if !(n + 1 == events.len() && last_end != 0) {
                // The blank line: after a CR line end, an LF would make the pair one CRLF line
                // end (as the spec says), so it is written as CR or CRLF there.
                let blank = match eol() {
                    "\n" if text.ends_with('\r') => "\r",
                    other => other,
                };
                text.push_str(blank);
            }
        }
        let mut p = SseParser::new();
        let mut got = Vec::new();
        for piece in split(text.as_bytes(), &cuts) {
            p.push(piece);
            while let Some(ev) = p.next_event().unwrap() {
                got.push(ev);
            }
        }
        got.extend(p.finish());
        let want: Vec<SseEvent> = events
            .iter()
            .map(|e| SseEvent { event: e.name.as_deref().map(|n| Bytes::copy_from_slice(n.as_bytes())), data: Bytes::from(e.lines.join("\n")) })
            .collect();
        prop_assert_eq!(got, want, "stream {:?}", text);
    }
}

// ---------------------------------------------------------------------------------------------
// 2. NDJSON

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn ndjson_lines_come_back_unchanged(
        strings in prop::collection::vec(any::<String>(), 0..8),
        crlf in prop::collection::vec(any::<bool>(), 8),
        trailing_newline in any::<bool>(),
        cuts in cuts(),
    ) {
        let lines: Vec<String> = strings.iter().map(|s| serde_json::to_string(s).unwrap()).collect();
        let mut text = String::new();
        for (i, l) in lines.iter().enumerate() {
            text.push_str(l);
            if i + 1 < lines.len() || trailing_newline {
                text.push_str(if crlf[i % crlf.len()] { "\r\n" } else { "\n" });
            }
        }
        let mut p = NdjsonParser::new();
        let mut got = Vec::new();
        for piece in split(text.as_bytes(), &cuts) {
            p.push(piece);
            while let Some(l) = p.next_line().unwrap() {
                got.push(l);
            }
        }
        got.extend(p.finish());
        let want: Vec<Bytes> = lines.into_iter().map(Bytes::from).collect();
        prop_assert_eq!(got, want);
    }
}

// ---------------------------------------------------------------------------------------------
// 3. The JSON scanner

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn scanned_member_ranges_parse_back_to_the_objects_values(
        object in json_object(json_value(true)),
        pretty in any::<bool>(),
        pad in "[ \t\r\n]{0,3}",
    ) {
        let body = if pretty { serde_json::to_string_pretty(&object) } else { serde_json::to_string(&object) }.unwrap();
        let text = format!("{pad}{body}{pad}");
        // Compare against the text parsed as a whole, so number parsing is the same on both sides.
        let whole: Map<String, Value> = serde_json::from_str(&text).unwrap();
        let s = text.as_bytes();
        let mut seen = Vec::new();
        scan::members(s, 0..s.len(), &mut |m| {
            let key: String = if m.key_escaped {
                serde_json::from_slice(&[b"\"", m.key, b"\""].concat()).unwrap()
            } else {
                String::from_utf8(m.key.to_vec()).unwrap()
            };
            assert_eq!(m.key_escaped, m.key.contains(&b'\\'));
            let value: Value = serde_json::from_slice(&s[m.value.clone()]).unwrap();
            seen.push((key, value));
            Ok(())
        })
        .unwrap();
        prop_assert_eq!(seen.len(), whole.len());
        for (k, v) in &seen {
            prop_assert_eq!(Some(v), whole.get(k), "key {:?}", k);
        }
    }

    #[test]
    fn the_scanner_never_panics_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..64),
        object in json_object(json_value(false)),
        cut in any::<Index>(),
        flip in any::<(Index, u8)>(),
    ) {
        let check = |s: &[u8]| {
            let _ = scan::members(s, 0..s.len(), &mut |_| Ok(()));
            let _ = scan::elements(s, 0..s.len(), &mut |_| Ok(()));
            let _ = scan::is_empty(s);
            let _ = scan::plain_str(s);
        };
        check(&bytes);
        // Broken JSON: truncated, and with one byte replaced.
        let json = serde_json::to_vec(&object).unwrap();
        check(&json[..cut.index(json.len() + 1)]);
        let mut mutated = json.clone();
        mutated[flip.0.index(json.len())] = flip.1;
        check(&mutated);
    }
}

// ---------------------------------------------------------------------------------------------
// 4. `ChatRequest::parse` + `body_with_model`

fn model_name() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[a-z0-9\"\\\\/:. \u{e9}\u{1F600}-]{0,16}"]
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn body_with_model_changes_only_the_model(
        model in model_name(),
        upstream in model_name(),
        extra in prop::collection::btree_map("[a-z_]{1,10}", json_value(true), 0..5),
        messages in prop::collection::vec(json_object(json_value(true)), 0..3),
        order in any::<Index>(),
        spaced in any::<bool>(),
    ) {
        let mut members: Vec<(String, Value)> = extra
            .into_iter()
            .filter(|(k, _)| !matches!(k.as_str(), "model" | "messages" | "stream" | "stream_options"))
            .collect();
        members.push(("messages".into(), Value::Array(messages)));
        members.insert(order.index(members.len() + 1), ("model".into(), Value::String(model.clone())));
        let sep = if spaced { " " } else { "" };
        let body = format!(
            "{{{sep}{}{sep}}}",
            members
                .iter()
                .map(|(k, v)| format!("{}{sep}:{sep}{}", serde_json::to_string(k).unwrap(), serde_json::to_string(v).unwrap()))
                .collect::<Vec<_>>()
                .join(&format!(",{sep}"))
        );
        let req = ChatRequest::parse(Bytes::from(body.clone())).unwrap();
        prop_assert_eq!(&req.model, &model);
        let rewritten = req.body_with_model(&upstream);
        let mut want: Value = serde_json::from_str(&body).unwrap();
        want["model"] = Value::String(upstream.clone());
        let got: Value = serde_json::from_slice(&rewritten).unwrap();
        prop_assert_eq!(got, want);
        // The rewritten body is itself a valid request naming the new model.
        prop_assert_eq!(ChatRequest::parse(rewritten).unwrap().model, upstream);
    }
}

// ---------------------------------------------------------------------------------------------
// 5. OpenAI → Anthropic → OpenAI

const DEFAULT_MAX_TOKENS: u64 = 4096;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "\\PC{0,12}", any::<String>()]
}

fn image_url() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9/._-]{0,16}".prop_map(|p| format!("https://example.com/{p}")),
        ("(png|jpeg|gif|webp)", "[A-Za-z0-9+/]{0,16}={0,2}").prop_map(|(t, d)| format!("data:image/{t};base64,{d}")),
    ]
}

fn content_part() -> impl Strategy<Value = ContentPart> {
    prop_oneof![
        text().prop_map(|text| ContentPart::Text { text }),
        image_url().prop_map(|url| ContentPart::ImageUrl {
            image_url: ImageUrl { url, detail: None }
        }),
    ]
}

fn content() -> impl Strategy<Value = Content> {
    prop_oneof![
        text().prop_map(Content::Text),
        prop::collection::vec(content_part(), 0..4).prop_map(Content::Parts)
    ]
}

/// Assistant content: OpenAI allows only text (and refusal) parts there.
fn assistant_content() -> impl Strategy<Value = Content> {
    prop_oneof![
        text().prop_map(Content::Text),
        prop::collection::vec(text().prop_map(|text| ContentPart::Text { text }), 0..3).prop_map(Content::Parts),
    ]
}

fn tool_call() -> impl Strategy<Value = ToolCall> {
    (
        "[a-zA-Z0-9_]{1,12}",
        "[a-zA-Z0-9_-]{1,16}",
        prop_oneof![1 => Just(None), 6 => json_object(json_value(false)).prop_map(Some)],
    )
        .prop_map(|(id, name, args)| ToolCall {
            id: Some(format!("call_{id}")),
            kind: Some("function".into()),
            function: FunctionCall {
                name: Some(name),
                // `None` is sent as empty arguments, which mean `{}`.
                arguments: Some(args.map(|a| a.to_string()).unwrap_or_default()),
            },
            ..Default::default()
        })
}

fn message() -> impl Strategy<Value = Message> {
    let text_only = |role: &'static str| {
        text().prop_map(move |t| Message {
            role: role.into(),
            content: Some(Content::Text(t)),
            ..Default::default()
        })
    };
    prop_oneof![
        1 => text_only("system"),
        1 => text_only("developer"),
        4 => content().prop_map(|c| Message { role: "user".into(), content: Some(c), ..Default::default() }),
        4 => (prop::option::of(assistant_content()), prop::collection::vec(tool_call(), 0..3)).prop_map(|(content, calls)| Message {
            role: "assistant".into(),
            content,
            tool_calls: (!calls.is_empty()).then_some(calls),
            ..Default::default()
        }),
        2 => ("[a-zA-Z0-9_]{1,12}", text()).prop_map(|(id, t)| Message {
            role: "tool".into(),
            content: Some(Content::Text(t)),
            tool_call_id: Some(format!("call_{id}")),
            ..Default::default()
        }),
    ]
}

fn tool() -> impl Strategy<Value = Tool> {
    (
        "[a-zA-Z0-9_-]{1,16}",
        prop::option::of(text()),
        prop::option::of(json_object(json_value(false))),
    )
        .prop_map(|(name, description, parameters)| Tool {
            kind: "function".into(),
            function: FunctionDef {
                name,
                description,
                parameters,
                strict: None,
            },
        })
}

fn tool_choice() -> impl Strategy<Value = Option<ToolChoice>> {
    prop_oneof![
        Just(None),
        prop_oneof![Just("auto"), Just("required"), Just("none")].prop_map(|m| Some(ToolChoice::Mode(m.into()))),
        "[a-zA-Z0-9_-]{1,16}".prop_map(|name| Some(ToolChoice::Named(NamedToolChoice {
            kind: "function".into(),
            function: NamedFunction { name }
        }))),
    ]
}

fn stop() -> impl Strategy<Value = Option<Stop>> {
    prop_oneof![
        Just(None),
        text().prop_map(|s| Some(Stop::One(s))),
        prop::collection::vec(text(), 0..4).prop_map(|v| Some(Stop::Many(v))),
    ]
}

prop_compose! {
    fn openai_request()(
        messages in prop::collection::vec(message(), 0..8),
        tools in prop::option::of(prop::collection::vec(tool(), 0..3)),
        tool_choice in tool_choice(),
        parallel_tool_calls in prop::option::of(any::<bool>()),
        temperature in prop::option::of((0u32..=200).prop_map(|t| f64::from(t) / 100.0)),
        top_p in prop::option::of((0u32..=100).prop_map(|t| f64::from(t) / 100.0)),
        max_tokens in prop::option::of(1u64..200_000),
        max_completion_tokens in prop::option::of(1u64..200_000),
        stop in stop(),
        stream in prop::option::of(any::<bool>()),
        user in prop::option::of("[a-z0-9-]{0,12}"),
    ) -> ChatCompletionRequest {
        ChatCompletionRequest {
            model: "alias".into(),
            messages,
            tools,
            tool_choice,
            parallel_tool_calls,
            temperature,
            top_p,
            max_tokens,
            max_completion_tokens,
            stop,
            stream,
            user,
            ..Default::default()
        }
    }
}

/// What a conversation says, in a shape both formats can be compared in.
#[derive(Clone, Debug, PartialEq)]
enum Atom {
    Text(String),
    Image(String),
    Call { id: String, name: String, args: Value },
    Result { id: String, text: String },
}

fn part_atoms(content: Option<&Content>) -> Vec<Atom> {
    content
        .map(Content::parts)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| match p {
            ContentPart::Text { text } if text.is_empty() => None,
            ContentPart::Text { text } => Some(Atom::Text(text)),
            ContentPart::ImageUrl { image_url } => Some(Atom::Image(image_url.url)),
            other => panic!("unexpected part {other:?}"),
        })
        .collect()
}

fn call_atoms(m: &Message) -> Vec<Atom> {
    m.tool_calls
        .iter()
        .flatten()
        .map(|c| {
            let args = c.function.arguments.as_deref().unwrap_or("");
            Atom::Call {
                id: c.id.clone().unwrap(),
                name: c.function.name.clone().unwrap(),
                args: if args.is_empty() {
                    json!({})
                } else {
                    serde_json::from_str(args).unwrap()
                },
            }
        })
        .collect()
}

/// The OpenAI messages a request should come back with after the trip through Anthropic, as
/// (role, atoms). The documented normalizations (`to_anthropic_messages`, `to_openai`):
/// - system and developer messages become one leading `system` message (empty ones dropped);
/// - empty text parts, and messages left with nothing, are dropped (Anthropic rejects them);
/// - tool results ride in user turns and consecutive same-role turns merge, so what comes back
///   is per merged user turn its tool results first (as `tool` messages) then one `user`
///   message with the rest, and per merged assistant turn one `assistant` message whose text is
///   the texts concatenated (no separator) and whose tool calls are all the turn's calls;
/// - tool-call arguments come back as the same JSON value, not the same text (empty → `{}`).
fn expected_conversation(req: &ChatCompletionRequest) -> (Vec<String>, Vec<(String, Vec<Atom>)>) {
    let mut system = Vec::new();
    let mut turns: Vec<(&str, Vec<Atom>)> = Vec::new();
    for m in &req.messages {
        let (group, atoms) = match m.role.as_str() {
            "system" | "developer" => {
                system.extend(m.content.as_ref().map(|c| c.text("\n")).filter(|t| !t.is_empty()));
                continue;
            }
            "user" => ("user", part_atoms(m.content.as_ref())),
            "assistant" => ("assistant", [part_atoms(m.content.as_ref()), call_atoms(m)].concat()),
            "tool" => {
                let text = m.content.as_ref().map(|c| c.text("")).unwrap_or_default();
                (
                    "user",
                    vec![Atom::Result {
                        id: m.tool_call_id.clone().unwrap(),
                        text,
                    }],
                )
            }
            other => unreachable!("{other}"),
        };
        if atoms.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((g, existing)) if *g == group => existing.extend(atoms),
            _ => turns.push((group, atoms)),
        }
    }
    let mut out = Vec::new();
    for (group, atoms) in turns {
        if group == "user" {
            let (results, rest): (Vec<Atom>, Vec<Atom>) =
                atoms.into_iter().partition(|a| matches!(a, Atom::Result { .. }));
            out.extend(results.into_iter().map(|r| ("tool".to_owned(), vec![r])));
            if !rest.is_empty() {
                out.push(("user".to_owned(), rest));
            }
        } else {
            let text: String = atoms
                .iter()
                .filter_map(|a| if let Atom::Text(t) = a { Some(t.as_str()) } else { None })
                .collect();
            let mut merged: Vec<Atom> = (!text.is_empty()).then_some(Atom::Text(text)).into_iter().collect();
            merged.extend(atoms.into_iter().filter(|a| matches!(a, Atom::Call { .. })));
            out.push(("assistant".to_owned(), merged));
        }
    }
    (system, out)
}

fn observed_conversation(messages: &[Message]) -> (Vec<String>, Vec<(String, Vec<Atom>)>) {
    let mut system = Vec::new();
    let mut out = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        match m.role.as_str() {
            "system" => {
                assert_eq!(i, 0, "the system message leads");
                system = m
                    .content
                    .as_ref()
                    .unwrap()
                    .parts()
                    .into_iter()
                    .map(|p| match p {
                        ContentPart::Text { text } => text,
                        other => panic!("system part {other:?}"),
                    })
                    .collect();
            }
            "user" => out.push(("user".to_owned(), part_atoms(m.content.as_ref()))),
            "assistant" => out.push((
                "assistant".to_owned(),
                [part_atoms(m.content.as_ref()), call_atoms(m)].concat(),
            )),
            "tool" => out.push((
                "tool".to_owned(),
                vec![Atom::Result {
                    id: m.tool_call_id.clone().unwrap(),
                    text: m.content.as_ref().map(|c| c.text("")).unwrap_or_default(),
                }],
            )),
            other => panic!("unexpected role {other}"),
        }
    }
    (system, out)
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn openai_requests_survive_the_round_trip_through_anthropic(req in openai_request()) {
        // Over the wire, as the ingress and the upstream would see it.
        let incoming: ChatCompletionRequest = serde_json::from_str(&serde_json::to_string(&req).unwrap()).unwrap();
        prop_assert_eq!(&incoming, &req);
        let anthropic = to_anthropic(&incoming, "claude-x", DEFAULT_MAX_TOKENS).unwrap();
        let anthropic: MessagesRequest = serde_json::from_str(&serde_json::to_string(&anthropic).unwrap()).unwrap();

        // Anthropic's own rules hold on the translated request.
        prop_assert_eq!(&anthropic.model, "claude-x");
        for pair in anthropic.messages.windows(2) {
            prop_assert_ne!(&pair[0].role, &pair[1].role, "turns alternate");
        }
        if let Some(t) = anthropic.temperature {
            prop_assert!((0.0..=1.0).contains(&t));
        }

        let back = to_openai(&anthropic).unwrap();
        prop_assert_eq!(&back.model, "claude-x");
        prop_assert_eq!(observed_conversation(&back.messages), expected_conversation(&req));

        let max = req.max_completion_tokens.or(req.max_tokens).unwrap_or(DEFAULT_MAX_TOKENS);
        prop_assert_eq!(back.max_tokens, Some(max));
        prop_assert_eq!(back.max_completion_tokens, None);
        // OpenAI's 0..=2 is clamped into Anthropic's 0..=1.
        prop_assert_eq!(back.temperature, req.temperature.map(|t| t.clamp(0.0, 1.0)));
        prop_assert_eq!(back.top_p, req.top_p);
        let stops = req.stop.as_ref().map(Stop::to_vec).filter(|s| !s.is_empty());
        prop_assert_eq!(back.stop.as_ref().map(Stop::to_vec), stops);
        prop_assert_eq!(&back.user, &req.user);
        prop_assert_eq!(back.stream, req.stream.filter(|s| *s));

        // Tools: name, description and schema survive; a missing schema becomes the empty one.
        let want_tools = req.tools.as_ref().map(|tools| {
            tools
                .iter()
                .map(|t| Tool {
                    kind: "function".into(),
                    function: FunctionDef {
                        parameters: Some(t.function.parameters.clone().unwrap_or_else(|| json!({"type": "object", "properties": {}}))),
                        ..t.function.clone()
                    },
                })
                .collect::<Vec<_>>()
        });
        prop_assert_eq!(&back.tools, &want_tools);

        // tool_choice survives; `parallel_tool_calls: false` survives except with `none` (which
        // Anthropic's `disable_parallel_tool_use` does not take) and, with no tool_choice, comes
        // back as an explicit `auto`. `parallel_tool_calls: true` is the default and is dropped.
        let parallel_off = req.parallel_tool_calls == Some(false);
        let want_choice = match (&req.tool_choice, parallel_off) {
            (None, true) => Some(ToolChoice::Mode("auto".into())),
            (c, _) => c.clone(),
        };
        prop_assert_eq!(&back.tool_choice, &want_choice);
        let is_none = matches!(&want_choice, Some(ToolChoice::Mode(m)) if m == "none");
        prop_assert_eq!(back.parallel_tool_calls, (parallel_off && !is_none).then_some(false));
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Anthropic stream → OpenAI chunks: tool-call arguments

fn event(v: Value) -> StreamEvent {
    serde_json::from_value(v).unwrap()
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn streamed_tool_arguments_survive_any_fragmentation(
        lead_text in prop::option::of("\\PC{1,12}"),
        calls in prop::collection::vec(
            ("[a-zA-Z0-9_]{1,12}", "[a-zA-Z0-9_-]{1,16}", json_object(json_value(true)), any::<bool>(), cuts()),
            1..4,
        ),
        include_usage in any::<bool>(),
    ) {
        let mut events = vec![event(json!({
            "type": "message_start",
            "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "claude-x",
                        "usage": {"input_tokens": 3, "output_tokens": 1}}
        }))];
        let mut index = 0;
        if let Some(t) = &lead_text {
            events.push(event(json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
            events.push(event(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}})));
            events.push(event(json!({"type": "content_block_stop", "index": 0})));
            index = 1;
        }
        let mut want = Vec::new();
        for (i, (id, name, args, pretty, cuts)) in calls.iter().enumerate() {
            let args_text = if *pretty { serde_json::to_string_pretty(args) } else { serde_json::to_string(args) }.unwrap();
            let at = index + i;
            events.push(event(json!({"type": "content_block_start", "index": at,
                "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}})));
            for fragment in split_str(&args_text, cuts) {
                events.push(event(json!({"type": "content_block_delta", "index": at,
                    "delta": {"type": "input_json_delta", "partial_json": fragment}})));
            }
            events.push(event(json!({"type": "content_block_stop", "index": at})));
            // An empty object may stream no fragment at all; the translator then sends `{}`.
            want.push((id.clone(), name.clone(), args_text));
        }
        events.push(event(json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}})));
        events.push(event(json!({"type": "message_stop"})));

        let mut t = ToOpenAi::new("alias", include_usage, 1);
        let mut got: Vec<(String, String, String)> = Vec::new();
        let mut text = String::new();
        let mut finish = None;
        for e in events {
            for chunk in t.on_event(e).unwrap() {
                let chunk: ChatCompletionChunk = serde_json::from_slice(&chunk.data).unwrap();
                prop_assert_eq!(&chunk.model, "alias");
                for choice in &chunk.choices {
                    text.push_str(choice.delta.content.as_deref().unwrap_or(""));
                    for call in choice.delta.tool_calls.iter().flatten() {
                        let i = call.index.unwrap() as usize;
                        if i == got.len() {
                            got.push((call.id.clone().unwrap(), call.function.name.clone().unwrap(), String::new()));
                        }
                        got[i].2.push_str(call.function.arguments.as_deref().unwrap_or(""));
                    }
                    finish = choice.finish_reason.clone().or(finish);
                }
            }
        }
        prop_assert!(t.finished());
        prop_assert_eq!(text, lead_text.unwrap_or_default());
        prop_assert_eq!(finish.as_deref(), Some("tool_calls"));
        prop_assert_eq!(got, want);
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// The text-delta fast path, which reuses the bytes around the last text it parsed, gives
    /// what the whole path gives for any sequence of events: text deltas around random texts
    /// (escaped as serde_json or Anthropic escape them, or cut short), of other blocks, with
    /// raw control characters, bad UTF-8 or trailing bytes, and other events between them.
    #[test]
    fn the_text_delta_fast_path_gives_what_the_whole_path_gives(
        events in prop::collection::vec((0..9u8, "\\PC{0,10}|[\\x00-\\x1f\"\\\\/é]{0,4}", 0..3u32), 1..24),
        include_usage in any::<bool>(),
    ) {
        let start = r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude","usage":{"input_tokens":3,"output_tokens":1}}}"#;
        let mut fast = ToOpenAi::new("alias", include_usage, 7);
        let mut slow = ToOpenAi::new("alias", include_usage, 7);
        for t in [&mut fast, &mut slow] {
            t.on_event(serde_json::from_str(start).unwrap()).unwrap();
        }
        for (kind, text, index) in events {
            let plain = json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}).to_string();
            let data: Vec<u8> = match kind {
                // serde_json's escapes; the commonest.
                0..=3 => plain.into_bytes(),
                // Escapes serde_json does not write (`\/`, `\u00e9`).
                4 => plain.replace('/', "\\/").replace('é', "\\u00e9").into_bytes(),
                // A raw control character, bad UTF-8, trailing bytes: not valid JSON (or not JSON alone).
                5 => plain.replacen("\"text\":\"", "\"text\":\"\n", 1).into_bytes(),
                6 => [plain.as_bytes(), b" x"].concat(),
                7 => plain.replacen("\"text\":\"", "\"text\":\"\u{ff}", 1).into_bytes().into_iter().flat_map(|b| if b == 0xc3 { vec![0xff] } else { vec![b] }).collect(),
                // Another event between the deltas.
                _ => br#"{"type":"ping"}"#.to_vec(),
            };
            let slow_says: Option<Result<Vec<crate::wire::chunk::Chunk>, String>> =
                serde_json::from_slice::<StreamEvent>(&data).ok().map(|e| slow.on_event(e).map_err(|e| e.message));
            match fast.text_delta(&data) {
                Some(got) => prop_assert_eq!(Some(Ok(got.into_iter().collect())), slow_says, "{}", String::from_utf8_lossy(&data)),
                // Not a text delta, or not valid: the whole path, whatever it says, is taken.
                None => prop_assert!(!matches!(&slow_says, Some(Ok(c)) if c.len() == 1 && c[0].content && serde_json::from_slice::<Value>(&data).is_ok_and(|v| v["delta"]["type"] == "text_delta")), "{}", String::from_utf8_lossy(&data)),
            }
        }
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// The same for the other direction: OpenAI chunks that continue a text block, read by
    /// their bytes once one was parsed, give the frames the whole path gives, amid chunks
    /// that are not text continuations (a finish, a tool call, another choice) or not valid.
    #[test]
    fn the_text_chunk_fast_path_gives_what_the_whole_path_gives(
        chunks in prop::collection::vec((0..11u8, "\\PC{0,10}|[\\x00-\\x1f\"\\\\/é]{0,4}"), 1..24),
    ) {
        let chunk = |choice: Value| json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "up", "choices": [choice]}).to_string();
        let text = |t: &str| chunk(json!({"index": 0, "delta": {"content": t}, "logprobs": null, "finish_reason": null}));
        let mut fast = ToAnthropic::new("chat");
        let mut slow = ToAnthropic::new("chat");
        for (kind, t) in chunks {
            let data: Vec<u8> = match kind {
                0..=3 => text(&t).into_bytes(),
                4 => text(&t).replace('/', "\\/").replace('é', "\\u00e9").into_bytes(),
                5 => text(&t).replacen("\"content\":\"", "\"content\":\"\t", 1).into_bytes(),
                6 => [text(&t).as_bytes(), b" x"].concat(),
                7 => text(&t).into_bytes().into_iter().map(|b| if b == b'a' { 0xff } else { b }).collect(),
                8 => chunk(json!({"index": 0, "delta": {"content": t}, "logprobs": null, "finish_reason": "stop"})).into_bytes(),
                9 => chunk(json!({"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": t}}]}})).into_bytes(),
                _ => chunk(json!({"index": 1, "delta": {"content": t}, "logprobs": null, "finish_reason": null})).into_bytes(),
            };
            let parsed = serde_json::from_slice::<ChatCompletionChunk>(&data).ok();
            match fast.text_chunk(&data) {
                Some(frame) => {
                    let parsed = parsed.as_ref();
                    prop_assert!(parsed.is_some(), "{}", String::from_utf8_lossy(&data));
                    let want: Vec<u8> = slow.on_chunk(parsed.unwrap()).iter().flat_map(|e| e.to_sse().to_vec()).collect();
                    prop_assert_eq!(frame.to_vec(), want, "{}", String::from_utf8_lossy(&data));
                }
                // The whole path, for both, as `/v1/messages` takes it.
                None => {
                    if let Some(c) = &parsed {
                        prop_assert_eq!(fast.on_chunk(c), slow.on_chunk(c));
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Stream chunks normalized with a remembered prefix

/// One chunk's text, built from parts so that consecutive chunks often share the bytes before
/// `choices` (and sometimes differ in them by one byte, or carry usage or an error there).
fn stream_chunk() -> impl Strategy<Value = String> {
    let head = prop_oneof![
        Just(r#"{"id":"chatcmpl-A","object":"chat.completion.chunk","created":1,"model":"m","system_fingerprint":"fp_1""#.to_owned()),
        Just(r#"{"id":"chatcmpl-B","object":"chat.completion.chunk","created":1,"model":"m","x_extra":{"a":[1,"}"]}"#.to_owned()),
        Just(r#"{ "id" : "chatcmpl-A" , "mo\u0064el":"q","object":"chat.completion.chunk""#.to_owned()),
    ];
    let before = prop_oneof![
        4 => Just(String::new()),
        1 => Just(r#","usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}"#.to_owned()),
        1 => Just(r#","error":{"message":"boom"}"#.to_owned()),
    ];
    // Text deltas, often of one shape around different texts (see `ChoiceShape`), sometimes
    // of a near one: another key, spaces, a finish reason to map, a role alone.
    let text = "[a-z \"\\\\]{0,6}".prop_map(|t| serde_json::to_string(&t).unwrap());
    let choice = prop_oneof![
        4 => text.clone().prop_map(|t| format!(r#"{{"index":0,"delta":{{"content":{t}}},"logprobs":null,"finish_reason":null}}"#)),
        1 => text.clone().prop_map(|t| format!(r#"{{"index":0,"delta":{{"reasoning_content":{t}}},"finish_reason":"max_tokens"}}"#)),
        1 => text.clone().prop_map(|t| format!(r#"{{"index":0,"delta":{{"content":{t}}},"finish_reason":"stop"}}"#)),
        1 => text.prop_map(|t| format!(r#"{{ "index":0,"delta":{{"content":{t}}} }}"#)),
        1 => Just(r#"{"index":0,"delta":{"role":"assistant"},"finish_reason":null}"#.to_owned()),
        1 => Just(r#"{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}"#.to_owned()),
        1 => Just(r#"{"index":0,"delta":{},"finish_reason":"eos","extra":1}"#.to_owned()),
    ]
    .boxed();
    let choices = prop_oneof![
        4 => prop::collection::vec(choice.clone(), 0..3).prop_map(|c| format!(r#","choices":[{}]"#, c.join(","))),
        1 => prop::collection::vec(choice, 1..2).prop_map(|c| format!(r#","choices": [ {} ]"#, c.join(","))),
        1 => Just(String::new()),
    ];
    let after = prop_oneof![
        3 => Just(String::new()),
        1 => Just(r#","usage":{"prompt_tokens":4,"completion_tokens":5,"total_tokens":9}"#.to_owned()),
        1 => Just(r#","choices":[]"#.to_owned()),
    ];
    (head, before, choices, after, prop_oneof![8 => Just(None), 1 => any::<Index>().prop_map(Some)]).prop_map(|(h, b, c, a, cut)| {
        let text = format!("{h}{b}{c}{a}}}");
        match cut {
            Some(i) => text[..i.index(text.len())].to_owned(), // truncated (all ASCII)
            None => text,
        }
    })
}

type Normalized = Result<(Bytes, bool, bool, Option<super::openai::Usage>, usize), super::openai::NormalizeError>;

fn normalized(r: Result<super::openai::NormalizedChunk, super::openai::NormalizeError>) -> Normalized {
    r.map(|n| (n.data, n.content, n.finish, n.usage, n.choices))
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn a_remembered_prefix_never_changes_a_normalized_chunk(
        chunks in prop::collection::vec(stream_chunk(), 1..8),
        keep_usage in any::<bool>(),
    ) {
        let mut prefix = super::openai::ChunkPrefix::default();
        for chunk in &chunks {
            let alone = normalized(super::openai::normalize_chunk(chunk.as_bytes(), "alias", keep_usage));
            let in_stream = normalized(super::openai::normalize_stream_chunk(chunk.as_bytes(), "alias", keep_usage, &mut prefix));
            prop_assert_eq!(in_stream, alone, "chunk {}", chunk);
        }
    }
}

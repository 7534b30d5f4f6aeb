"""The official `openai` Python SDK against a real Switchyard binary whose alias is served by a
`kind = "gemini"` provider pointing at the fake Gemini API (`switchyard-fake-gemini`).

The fake checks the API key Google-style, rejects request fields Gemini does not know, and runs
in strict mode (as Gemini 3 does): a function call replayed without the thought signature it
issued is a 400. So a tool-use loop that works here carries the signature through the SDK.
"""

import json
import os
import subprocess
import sys

import openai
import pytest

from support import start_gateway, stop_all

SWITCHYARD_BIN = os.environ.get("SWITCHYARD_BIN", "target/debug/switchyard")
FAKE_GEMINI_BIN = os.environ.get("FAKE_GEMINI_BIN", "target/debug/switchyard-fake-gemini")
GEMINI_KEY = "AIzaSy-sdk-test-gemini-key-0123456789"

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "strict": True,
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    procs = []
    try:
        fake = subprocess.Popen(
            [FAKE_GEMINI_BIN, "--api-key", GEMINI_KEY, "--strict-signatures", "--chunks", "4"],
            stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
        procs.append(fake)
        line = fake.stdout.readline().strip()
        assert line.startswith("listening on http://"), line
        fake_base = line.removeprefix("listening on ") + "/v1beta"
        config = tmp_path_factory.mktemp("cfg") / "switchyard.toml"
        config.write_text(f"""
[providers.gemini]
kind = "gemini"
base_url = "{fake_base}"
api_key = "{GEMINI_KEY}"

[models.chat]
targets = ["gemini/gemini-2.5-flash"]
""")
        yield start_gateway(procs, SWITCHYARD_BIN, config) + "/v1"
    finally:
        stop_all(procs)


@pytest.fixture
def client(gateway):
    # max_retries=0: the gateway does the retrying; the SDK must see the gateway's own answer.
    return openai.OpenAI(base_url=gateway, api_key="client-key", max_retries=0, timeout=20)


def test_plain_completion_through_gemini(client):
    raw = client.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}])
    completion = raw.parse()
    assert raw.headers["x-switchyard-provider"] == "gemini"
    assert raw.headers["x-switchyard-model"] == "gemini-2.5-flash"
    assert completion.model == "chat"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Hello from the fake Gemini."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens == 5
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens


def test_streamed_completion_through_gemini(client):
    stream = client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "Stream please"}],
        stream=True, stream_options={"include_usage": True})
    text, finish, usage, chunks = [], None, None, 0
    for chunk in stream:
        chunks += 1
        assert chunk.model == "chat"
        if chunk.choices:
            delta = chunk.choices[0].delta
            if delta.content:
                text.append(delta.content)
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert "".join(text) == "Hello from the fake Gemini."
    assert chunks >= 6  # preamble, 4 text events, finish, usage
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens == 5


def test_tool_call_loop_carries_the_thought_signature(client):
    messages = [{"role": "user", "content": "What's the weather in Lisbon?"}]
    first = client.chat.completions.create(model="chat", messages=messages, tools=[WEATHER_TOOL], tool_choice="required")
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "example", "unit": "c"}
    # Gemini's signature travels in the tool call's extra_content; the SDK keeps unknown fields.
    assert call.model_extra["extra_content"]["google"]["thought_signature"]

    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp_c": 21})})
    second = client.chat.completions.create(model="chat", messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == 'The function get_weather returned {"temp_c":21}.'


def test_streamed_tool_call_loop(client):
    messages = [{"role": "user", "content": "What's the weather in Lisbon?"}]
    stream = client.chat.completions.create(model="chat", messages=messages, tools=[WEATHER_TOOL], stream=True)
    calls, finish = {}, None
    for chunk in stream:
        if not chunk.choices:
            continue
        for delta in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": "", "extra": None})
            entry["id"] = delta.id or entry["id"]
            entry["name"] += delta.function.name or ""
            entry["arguments"] += delta.function.arguments or ""
            entry["extra"] = (delta.model_extra or {}).get("extra_content") or entry["extra"]
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert list(calls) == [0]
    call = calls[0]
    assert call["name"] == "get_weather" and json.loads(call["arguments"])["city"] == "example"
    assert call["extra"]["google"]["thought_signature"]

    messages.append({"role": "assistant", "content": None, "tool_calls": [{
        "id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]},
        "extra_content": call["extra"]}]})
    messages.append({"role": "tool", "tool_call_id": call["id"], "content": "sunny"})
    text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="chat", messages=messages, tools=[WEATHER_TOOL], stream=True) if c.choices)
    assert text == 'The function get_weather returned {"content":"sunny"}.'


def test_a_forged_signature_is_rejected_as_the_callers_error(client):
    messages = [
        {"role": "user", "content": "What's the weather in Lisbon?"},
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_x", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Lisbon\"}"},
            "extra_content": {"google": {"thought_signature": "Cforged"}}}]},
        {"role": "tool", "tool_call_id": "call_x", "content": "sunny"},
    ]
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="chat", messages=messages, tools=[WEATHER_TOOL])
    assert "thought signature" in e.value.message
    assert GEMINI_KEY not in e.value.response.text

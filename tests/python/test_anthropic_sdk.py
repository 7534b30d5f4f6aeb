"""The official `anthropic` Python SDK against a real Switchyard binary, on `/v1/messages`.

The alias `chat` is a chain whose first target is an OpenAI-compatible fake that fails with HTTP
500 (`switchyard-fake-upstream --fail-status 500`) and whose second is the fake Anthropic upstream
(`switchyard-fake-anthropic`), so every call here fails over, and the answer comes through the
native Anthropic passthrough. The alias `translated` is served by a healthy OpenAI-compatible fake
only, so the SDK also drives the translation both ways. Errors must raise the SDK's matching
exception classes.
"""

import os
import subprocess
import sys

import anthropic
import pytest

from support import start_gateway, stop_all

SWITCHYARD_BIN = os.environ.get("SWITCHYARD_BIN", "target/debug/switchyard")
FAKE_BIN = os.environ.get("FAKE_UPSTREAM_BIN", "target/debug/switchyard-fake-upstream")
FAKE_ANTHROPIC_BIN = os.environ.get("FAKE_ANTHROPIC_BIN", "target/debug/switchyard-fake-anthropic")

TOOL_INPUT = '{"city": "Paris"}'
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def start_fake(procs: list, args: list) -> str:
    """Starts a fake on a free port and waits for its `listening on http://ADDR` line."""
    proc = subprocess.Popen(args + ["--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    procs.append(proc)
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on http://"):
        raise RuntimeError(f"{args[0]} did not start: {line!r}")
    return line.removeprefix("listening on ")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    procs = []
    try:
        failing = start_fake(procs, [FAKE_BIN, "--fail-status", "500"])
        healthy = start_fake(procs, [FAKE_BIN, "--chunks", "5"])
        claude = start_fake(procs, [FAKE_ANTHROPIC_BIN, "--chunks", "4", "--tool-input", TOOL_INPUT])
        config = tmp_path_factory.mktemp("cfg") / "switchyard.toml"
        config.write_text(f"""
[retry]
backoff_initial = "10ms"
backoff_max = "50ms"

[providers.failing]
kind = "openai"
base_url = "{failing}/v1"
api_key = "sk-failing-secret-key-0123456789abcdef"

[providers.healthy]
kind = "openai"
base_url = "{healthy}/v1"
api_key = "sk-healthy-secret-key-0123456789abcdef"

[providers.claude]
kind = "anthropic"
base_url = "{claude}"
api_key = "sk-ant-fake-secret-key-0123456789abcdef"

[providers.limited]
kind = "mock"
failure_rate = 1.0
failure = "rate_limit"
retry_after = "30s"

[models.chat]
targets = ["failing/gpt-4o-mini", "claude/claude-sonnet-4-5"]

[models.translated]
targets = ["healthy/gpt-4o-mini"]

[models.limited]
targets = ["limited/any"]

[providers.overloaded]
kind = "mock"
failure_rate = 1.0
failure = "unavailable"

[models.overloaded]
targets = ["overloaded/any"]
""")
        yield start_gateway(procs, SWITCHYARD_BIN, config) + ""
    finally:
        stop_all(procs)


@pytest.fixture
def client(gateway):
    # max_retries=0: the gateway does the retrying; the SDK must see the gateway's own answer.
    return anthropic.Anthropic(base_url=gateway, api_key="client-key", max_retries=0, timeout=20)


def ask(text: str) -> list:
    return [{"role": "user", "content": text}]


def test_plain_message_fails_over_to_the_anthropic_target(client):
    raw = client.messages.with_raw_response.create(model="chat", max_tokens=200, system="Be brief.", messages=ask("Say hello"))
    message = raw.parse()
    assert raw.headers["x-switchyard-provider"] == "claude"
    assert raw.headers["x-switchyard-model"] == "claude-sonnet-4-5"
    assert int(raw.headers["x-switchyard-attempts"]) >= 2  # the failing OpenAI target was tried first
    assert raw.headers["x-request-id"]
    assert message.type == "message" and message.role == "assistant"
    assert message.model == "chat"
    assert message.content[0].type == "text"
    assert message.content[0].text == "Hello from the fake Anthropic upstream."
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


def test_streamed_message(client):
    with client.messages.stream(model="chat", max_tokens=200, messages=ask("Stream please")) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from the fake Anthropic upstream."
    assert final.model == "chat"
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


def test_tool_use_loop(client):
    first = client.messages.create(model="chat", max_tokens=200, tools=[WEATHER_TOOL], messages=ask("Weather in Paris?"))
    assert first.stop_reason == "tool_use"
    call = next(b for b in first.content if b.type == "tool_use")
    assert call.name == "get_weather"
    assert call.input == {"city": "Paris"}
    assert call.id.startswith("toolu_")
    second = client.messages.create(
        model="chat", max_tokens=200, tools=[WEATHER_TOOL],
        messages=ask("Weather in Paris?") + [
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18C and sunny"}]},
        ])
    assert second.stop_reason == "end_turn"
    assert second.content[0].text == "Done: 18C and sunny"


def test_streamed_tool_use(client):
    with client.messages.stream(model="chat", max_tokens=200, tools=[WEATHER_TOOL],
                                tool_choice={"type": "tool", "name": "get_weather"},
                                messages=ask("Weather in Paris?")) as stream:
        json_fragments = [e.partial_json for e in stream if e.type == "input_json"]
        final = stream.get_final_message()
    assert "".join(json_fragments) == TOOL_INPUT.replace(" ", "")
    assert final.stop_reason == "tool_use"
    call = next(b for b in final.content if b.type == "tool_use")
    assert call.input == {"city": "Paris"}


def test_an_openai_target_is_translated_both_ways(client):
    message = client.messages.create(model="translated", max_tokens=100, messages=ask("Hi"))
    assert message.model == "translated"
    assert message.content[0].text == "Hello from the fake upstream."
    assert message.stop_reason == "end_turn"
    with client.messages.stream(model="translated", max_tokens=100, messages=ask("Hi")) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from the fake upstream."
    assert final.usage.output_tokens > 0


def test_bearer_auth_is_accepted(gateway):
    client = anthropic.Anthropic(base_url=gateway, auth_token="client-token", max_retries=0, timeout=20)
    assert client.messages.create(model="chat", max_tokens=50, messages=ask("Hi")).content[0].text


def test_errors_raise_the_sdks_exceptions(client):
    with pytest.raises(anthropic.NotFoundError) as e:
        client.messages.create(model="no-such-model", max_tokens=10, messages=ask("Hi"))
    assert e.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.RateLimitError) as e:
        client.messages.create(model="limited", max_tokens=10, messages=ask("Hi"))
    assert e.value.response.headers["retry-after"]
    with pytest.raises(anthropic.OverloadedError) as e:
        client.messages.create(model="overloaded", max_tokens=10, messages=ask("Hi"))
    assert e.value.status_code == 529 and e.value.body["error"]["type"] == "overloaded_error"
    with pytest.raises(anthropic.BadRequestError) as e:
        client.messages.create(model="chat", max_tokens=10, messages=[{"role": "user", "content": 5}])
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert "sk-" not in str(e.value)

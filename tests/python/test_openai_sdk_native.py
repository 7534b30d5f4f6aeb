"""The official `openai` SDK through providers that speak other wire formats: an `anthropic`
provider (the fake Messages API) and an `ollama` provider (the fake native Ollama API). The
caller sees OpenAI's shapes whatever answers: plain, streamed and tool-calling completions.
"""

import json
import os

import openai
import pytest

from support import start_fake, start_gateway, stop_all

SWITCHYARD_BIN = os.environ.get("SWITCHYARD_BIN", "target/debug/switchyard")
FAKE_ANTHROPIC_BIN = os.environ.get("FAKE_ANTHROPIC_BIN", "target/debug/switchyard-fake-anthropic")
FAKE_OLLAMA_BIN = os.environ.get("FAKE_OLLAMA_BIN", "target/debug/switchyard-fake-ollama")

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    procs = []
    try:
        anthropic, anthropic_url = start_fake(
            [FAKE_ANTHROPIC_BIN, "--listen", "127.0.0.1:0", "--chunks", "4", "--tool-input", json.dumps({"city": "Paris"})])
        procs.append(anthropic)
        ollama, ollama_url = start_fake([FAKE_OLLAMA_BIN, "--reply", "Hello from a local model"])
        procs.append(ollama)
        config = tmp_path_factory.mktemp("cfg") / "switchyard.toml"
        config.write_text(f"""
[providers.claude]
kind = "anthropic"
base_url = "{anthropic_url}"
api_key = "sk-ant-sdk-test-key-0123456789"

[providers.local]
kind = "ollama"
base_url = "{ollama_url}"

[models.claude]
targets = ["claude/claude-sonnet-4-5"]

[models.local]
targets = ["local/llama3.2"]
""")
        yield start_gateway(procs, SWITCHYARD_BIN, config) + "/v1"
    finally:
        stop_all(procs)


@pytest.fixture
def client(gateway):
    return openai.OpenAI(base_url=gateway, api_key="client-key", max_retries=0, timeout=20)


@pytest.mark.parametrize("alias,provider", [("claude", "claude"), ("local", "local")])
def test_plain_completion(client, alias, provider):
    raw = client.chat.completions.with_raw_response.create(model=alias, messages=[{"role": "user", "content": "Hi"}])
    c = raw.parse()
    assert raw.headers["x-switchyard-provider"] == provider
    assert c.object == "chat.completion"
    assert c.model == alias
    assert c.choices[0].message.content
    assert c.choices[0].finish_reason == "stop"
    assert c.usage.total_tokens > 0


@pytest.mark.parametrize("alias", ["claude", "local"])
def test_streamed_completion_with_usage(client, alias):
    stream = client.chat.completions.create(model=alias, messages=[{"role": "user", "content": "Hi"}],
                                            stream=True, stream_options={"include_usage": True})
    text, finish, usage = [], None, None
    for chunk in stream:
        if chunk.choices:
            text.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert "".join(text).strip()
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens > 0


def test_tool_call_through_anthropic_streamed_and_not(client):
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    c = client.chat.completions.create(model="claude", messages=messages, tools=[TOOL])
    assert c.choices[0].finish_reason == "tool_calls"
    call = c.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    args, names = {}, {}
    for chunk in client.chat.completions.create(model="claude", messages=messages, tools=[TOOL], stream=True):
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            args[tc.index] = args.get(tc.index, "") + (tc.function.arguments or "")
            if tc.function.name:
                names[tc.index] = tc.function.name
    assert names == {0: "get_weather"}
    assert json.loads(args[0]) == {"city": "Paris"}, "streamed arguments arrive whole"

    # The second turn: the tool result goes back through the translation.
    messages += [c.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}]
    final = client.chat.completions.create(model="claude", messages=messages, tools=[TOOL])
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content

"""The official `openai` Python SDK against a real Switchyard binary.

The gateway runs with a chain whose first target refuses connections and whose second is the
fake OpenAI-compatible upstream (`switchyard-fake-upstream`), so every call here also fails over.
Error cases must raise the SDK's matching exception classes.
"""

import os
import subprocess
import sys

import openai
import pytest

from support import free_port, start_gateway, stop_all, wait_http

SWITCHYARD_BIN = os.environ.get("SWITCHYARD_BIN", "target/debug/switchyard")
FAKE_BIN = os.environ.get("FAKE_UPSTREAM_BIN", "target/debug/switchyard-fake-upstream")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    procs = []
    try:
        fake_port = free_port()
        procs.append(subprocess.Popen([FAKE_BIN, "--listen", f"127.0.0.1:{fake_port}", "--chunks", "8"],
                                      stdout=subprocess.PIPE, stderr=sys.stderr))
        wait_http(f"http://127.0.0.1:{fake_port}/v1/models")
        dead_port = free_port()  # nothing listens here: connection refused
        config = tmp_path_factory.mktemp("cfg") / "switchyard.toml"
        config.write_text(f"""
[retry]
backoff_initial = "10ms"
backoff_max = "50ms"

[providers.down]
kind = "openai"
base_url = "http://127.0.0.1:{dead_port}/v1"
api_key = "sk-down-secret-key-0123456789abcdef"

[providers.fake]
kind = "openai"
base_url = "http://127.0.0.1:{fake_port}/v1"
api_key = "sk-fake-secret-key-0123456789abcdef"

[providers.limited]
kind = "mock"
failure_rate = 1.0
failure = "rate_limit"
retry_after = "30s"

[providers.broken]
kind = "mock"
failure_rate = 1.0
failure = "mid_stream_drop"
reply = "one two three four five six"

[models.chat]
targets = ["down/gpt-4o-mini", "fake/gpt-4o-mini"]

[models.limited]
targets = ["limited/any"]

[models.broken]
targets = ["broken/any"]
[models.broken.retry]
attempts_per_target = 1

[providers.embed_limited]
kind = "mock"
failure_rate = 1.0
failure = "rate_limit"
retry_after = "30s"

[providers.embedder]
kind = "mock"

[models.embed]
targets = ["embed_limited/any", "embedder/mock-embedding"]
""")
        yield start_gateway(procs, SWITCHYARD_BIN, config) + "/v1"
    finally:
        stop_all(procs)


@pytest.fixture
def client(gateway):
    # max_retries=0: the gateway does the retrying; the SDK must see the gateway's own answer.
    return openai.OpenAI(base_url=gateway, api_key="client-key", max_retries=0, timeout=20)


def test_plain_completion_fails_over_to_the_live_target(client):
    raw = client.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "Say hello"}])
    completion = raw.parse()
    assert raw.headers["x-switchyard-provider"] == "fake"
    assert raw.headers["x-switchyard-model"] == "gpt-4o-mini"
    assert int(raw.headers["x-switchyard-attempts"]) >= 2  # the refused target was tried first
    assert raw.headers["x-request-id"]
    assert completion.model == "chat"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens


def test_streamed_completion(client):
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
    assert chunks >= 8
    assert "".join(text).strip()
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens > 0


def test_models_lists_the_aliases(client):
    ids = sorted(m.id for m in client.models.list())
    assert ids == ["broken", "chat", "embed", "limited"]


def test_unknown_model_raises_not_found(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="no-such-alias", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 404
    assert e.value.code == "model_not_found"


def test_malformed_request_raises_bad_request(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="chat", messages="not a list")
    assert e.value.status_code == 400


def test_rate_limited_chain_raises_rate_limit_error(client):
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="limited", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 429
    assert e.value.response.headers.get("retry-after")
    assert "limited/any" in e.value.message


def test_mid_stream_failure_raises_instead_of_ending_cleanly(client):
    stream = client.chat.completions.create(
        model="broken", messages=[{"role": "user", "content": "hi"}], stream=True)
    received = []
    with pytest.raises(openai.APIError) as e:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert received, "content before the break reached the client"
    assert "stream" in str(e.value.message).lower()


def test_error_messages_never_contain_provider_keys(client):
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="limited", messages=[{"role": "user", "content": "hi"}])
    body = e.value.response.text
    assert "sk-down-secret" not in body and "sk-fake-secret" not in body


def test_embeddings_fail_over_and_decode(client):
    # The SDK asks for base64 by default and decodes it; the rate-limited mock fails first.
    raw = client.embeddings.with_raw_response.create(model="embed", input=["hello", "world", "hello"])
    result = raw.parse()
    assert raw.headers["x-switchyard-provider"] == "embedder"
    assert int(raw.headers["x-switchyard-attempts"]) == 2
    assert result.object == "list"
    assert result.model == "embed"
    assert [e.index for e in result.data] == [0, 1, 2]
    assert all(len(e.embedding) == 8 for e in result.data)
    assert result.data[0].embedding == result.data[2].embedding
    assert result.data[0].embedding != result.data[1].embedding
    assert abs(sum(x * x for x in result.data[1].embedding) - 1.0) < 1e-3
    assert result.usage.prompt_tokens == result.usage.total_tokens > 0


def test_embeddings_float_format_and_dimensions(client):
    floats = client.embeddings.create(model="embed", input="hello", encoding_format="float", dimensions=5)
    assert len(floats.data) == 1 and len(floats.data[0].embedding) == 5
    decoded = client.embeddings.create(model="embed", input="hello", dimensions=5)
    assert [round(x, 5) for x in decoded.data[0].embedding] == [round(x, 5) for x in floats.data[0].embedding]


def test_embeddings_pass_through_to_an_openai_compatible_upstream(client):
    result = client.embeddings.create(model="chat", input="through the fake", encoding_format="float", dimensions=3)
    assert result.model == "chat"
    assert len(result.data[0].embedding) == 3


def test_embeddings_errors_raise_the_sdk_classes(client):
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-alias", input="x")
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="embed", input=[])
    assert e.value.status_code == 400
    assert e.value.param == "input"

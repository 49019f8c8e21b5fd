"""OpenAI semantics of `scratchpad serve`: chat completions through the official client (streaming
and not) with the plain-text template or a template file, the `scratchpad` block in chat
responses, stop strings left out of the text (finish_reason "stop"), echo."""
import json

import pytest
from serve_client import NAME, Server, run_command

from infer import Engine
from infer.chat import ChatTemplate
from infer.serve import main

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": [{"type": "text", "text": "Why?"}]}]


@pytest.fixture(scope="module")
def server(model):
    s = Server(model, max_batch=2)
    yield s
    s.close()


def alone(model, prompt: str, n: int, stop=()):
    return Engine(model).generate(prompt, max_bytes=n, threshold=1.5, stop=list(stop))[0]


def text(out: bytes) -> str:
    return out.decode("utf-8", errors="replace")


def test_chat_with_the_openai_client_streaming_and_not(server, model):
    prompt = "Be brief.\n\nUser: Hi there\nAssistant: Hello.\nUser: Why?\nAssistant:"
    want = alone(model, prompt, 24, ["\nUser:"])
    kw = dict(model=NAME, messages=MESSAGES, max_tokens=24, temperature=0, extra_body={"entropy_threshold": 1.5})
    r = server.client.chat.completions.create(**kw)
    c = r.choices[0]
    assert c.message.role == "assistant" and c.message.content == text(want.output) and c.finish_reason == "length"
    assert r.object == "chat.completion" and r.usage.prompt_tokens == len(prompt.encode())
    info = c.model_extra["scratchpad"]
    assert info["trunk_calls"] == want.events.commits + want.events.scratchpads and info["entropy_threshold"] == 1.5
    chunks = list(server.client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks[:-1]) == c.message.content
    assert chunks[-2].choices[0].finish_reason == "length" and "scratchpad" in chunks[-2].choices[0].model_extra
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(want.output)
    r2 = server.client.chat.completions.create(model=NAME, messages=MESSAGES, max_completion_tokens=5, temperature=0)
    assert r2.usage.completion_tokens == 5


def test_a_chat_template_file(model, tmp_path, capsys):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"system": "<{content}>", "user": "Q: {content}\n", "assistant": "A: {content}\n",
                                "generation": "A:", "stop": ["\nQ:"]}))
    s = Server(model, max_batch=1, chat_template=ChatTemplate.load(path))
    try:
        want = alone(model, "<Be brief.>Q: Hi there\nA: Hello.\nQ: Why?\nA:", 12, ["\nQ:"])
        r = s.client.chat.completions.create(model=NAME, messages=MESSAGES, max_tokens=12, temperature=0)
        assert r.choices[0].message.content == text(want.output)
    finally:
        s.close()
    path.write_text(json.dumps({"user": "no placeholder"}))
    code, err = run_command(main, ["--chat-template", path], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: --chat-template") and "Traceback" not in err


@pytest.mark.parametrize("stream", [False, True])
def test_stop_strings_are_left_out_of_the_text(server, model, stream):
    full = alone(model, "Once upon a time", 40).output
    i = next(i for i in range(2, len(full) - 1) if full[i] < 128 and full[i + 1] < 128)
    stop = full[i:i + 2].decode()
    want = text(full[:full.find(stop.encode())])
    kw = dict(model=NAME, prompt="Once upon a time", max_tokens=40, temperature=0, stop=[stop, "never-seen"])
    if stream:
        chunks = list(server.client.completions.create(stream=True, **kw))
        got, finish = "".join(ch.choices[0].text for ch in chunks), chunks[-1].choices[0].finish_reason
    else:
        r = server.client.completions.create(**kw)
        got, finish = r.choices[0].text, r.choices[0].finish_reason
    assert got == want and finish == "stop" and stop not in got


@pytest.mark.parametrize("stream", [False, True])
def test_echo_returns_the_prompt_before_the_completion(server, model, stream):
    want = "Once" + text(alone(model, "Once", 6).output)
    kw = dict(model=NAME, prompt="Once", max_tokens=6, temperature=0, echo=True)
    if stream:
        got = "".join(ch.choices[0].text for ch in server.client.completions.create(stream=True, **kw))
    else:
        got = server.client.completions.create(**kw).choices[0].text
    assert got == want


@pytest.mark.parametrize("body, param", [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages"),
    ({"messages": [{"role": "user", "content": "Hi\ud800"}]}, "messages"),
    ({"messages": [{"role": "user", "content": "x"}], "logprobs": True, "stream": True}, "logprobs"),
    ({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}, "top_logprobs"),
    ({"messages": [{"role": "user", "content": "x"}], "logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}, "tools"),
    ({"messages": [{"role": "user", "content": "x"}], "stream": "true"}, "stream"),
])
def test_bad_chat_requests_get_400(server, body, param):
    status, got = server.request("POST", "/v1/chat/completions", {"model": NAME, **body})
    assert status == 400 and got["error"]["param"] == param


def test_byte_logprobs_are_the_parallel_forwards(server, model):
    """logprobs (completions, top 3) and logprobs + top_logprobs (chat): each generated byte's
    log-prob and the top-k equal log_softmax of the parallel forward over prompt + output."""
    import torch

    r = server.complete(dict(prompt="Once upon", max_tokens=10, temperature=0, logprobs=3))[1]["choices"][0]
    c = server.request("POST", "/v1/chat/completions", {"model": NAME, "messages": MESSAGES[1:2], "max_tokens": 6,
                                                        "temperature": 0, "logprobs": True, "top_logprobs": 2})[1]
    for prompt, gen in (("Once upon", alone(model, "Once upon", 10).output),
                        ("User: Hi there\nAssistant:", alone(model, "User: Hi there\nAssistant:", 6).output)):
        x = torch.tensor([list(prompt.encode() + gen)])
        with torch.no_grad():
            lp = model(x, threshold=1.5).logits[0, len(prompt) - 1: -1].log_softmax(-1)
        want = lp.gather(1, x[0, len(prompt):].unsqueeze(1)).squeeze(1).tolist()
        if prompt == "Once upon":
            got, tops = r["logprobs"]["token_logprobs"], r["logprobs"]["top_logprobs"]
            assert len(got) == len(gen) and all(len(t) == 3 for t in tops)
            assert max(tops[0].values()) == pytest.approx(lp[0].max().item(), abs=1e-9)
        else:
            entries = c["choices"][0]["logprobs"]["content"]
            got = [e["logprob"] for e in entries]
            assert [e["bytes"] for e in entries] == [[b] for b in gen] and len(entries[0]["top_logprobs"]) == 2
        assert got == pytest.approx(want, abs=1e-9)

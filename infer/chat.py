"""`POST /v1/chat/completions` for a base model: the messages become one plain-text prompt through a
chat template, and the reply is what the model writes after the template's generation prefix, up
to the template's stop strings (the next "User:" turn by default).

The default template (a file given with `scratchpad serve --chat-template FILE` replaces it; the
file is a JSON object with the same keys, each role's text holding `{content}` once):

    {"system": "{content}\\n\\n", "user": "User: {content}\\n", "assistant": "Assistant: {content}\\n",
     "generation": "Assistant:", "stop": ["\\nUser:"]}

so [system S, user U] -> "S\\n\\nUser: U\\nAssistant:". A "developer" message counts as system.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from infer.api_fields import ApiError, boolean, number, refuse, utf8
from infer.openai_api import FINISH, NOT_IMPLEMENTED, Job, byte_token, check_model, requests_for, \
    scratchpad_info, stream_flags, usage
from scratchpad.errors import UserError

ROLES = ("system", "user", "assistant")
DEFAULT_TEMPLATE = {"system": "{content}\n\n", "user": "User: {content}\n", "assistant": "Assistant: {content}\n",
                    "generation": "Assistant:", "stop": ["\nUser:"]}
CHAT_REFUSED = {
    **NOT_IMPLEMENTED,
    "tools": ((None, []), "no tool calls"),
    "tool_choice": ((None, "none"), "no tool calls"),
    "functions": ((None, []), "no function calls"),
    "function_call": ((None, "none"), "no function calls"),
    "response_format": ((None, {"type": "text"}), "plain text only"),
}


class ChatTemplate:
    def __init__(self, parts: dict):
        self.parts = parts
        self.stops = [s.encode() for s in parts.get("stop", [])]

    @classmethod
    def load(cls, path) -> "ChatTemplate":
        """A template file (see the module docstring), checked; a bad one is a UserError."""
        try:
            parts = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise UserError(f"--chat-template {path}: cannot read a JSON template ({e})") from None
        if not isinstance(parts, dict) or set(parts) - {*ROLES, "generation", "stop"}:
            raise UserError(f"--chat-template {path}: a JSON object with keys {', '.join(ROLES)}, generation, stop")
        for role in ROLES:
            text = parts.get(role)
            if not isinstance(text, str) or text.count("{content}") != 1:
                raise UserError(f"--chat-template {path}: '{role}' must be a string holding {{content}} once")
        if not isinstance(parts.get("generation"), str):
            raise UserError(f"--chat-template {path}: 'generation' (the text the reply follows) must be a string")
        stop = parts.setdefault("stop", [])
        if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) and s for s in stop):
            raise UserError(f"--chat-template {path}: 'stop' must be a list of up to 4 non-empty strings")
        return cls(parts)

    def render(self, messages: list[tuple[str, str]]) -> str:
        """[(role, content)] -> the prompt text, ending with the generation prefix."""
        turns = "".join(self.parts[role].replace("{content}", text) for role, text in messages)
        return turns + self.parts["generation"]


def messages_of(body: dict) -> list[tuple[str, str]]:
    """The `messages` list -> [(role, text)]; content is a string or a list of text parts."""
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise ApiError(400, "'messages' must be a non-empty list of {role, content} objects", "messages")
    out = []
    for i, m in enumerate(msgs):
        role = m.get("role") if isinstance(m, dict) else None
        role = "system" if role == "developer" else role
        if role not in ROLES:
            raise ApiError(400, f"messages[{i}]: 'role' must be one of system, developer, user, assistant, got "
                           f"{role!r}", "messages")
        content = m.get("content")
        if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                             and isinstance(p.get("text"), str) for p in content):
            content = "".join(p["text"] for p in content)
        if not isinstance(content, str):
            raise ApiError(400, f"messages[{i}]: 'content' must be a string or a list of text parts", "messages")
        utf8(content, "messages")
        out.append((role, content))
    return out


def parse_chat(body: dict, model_name: str, cfg, template: ChatTemplate, max_tokens_limit: int) -> Job:
    """A /v1/chat/completions JSON body -> a Job with one Request (the rendered conversation)."""
    check_model(body, model_name)
    refuse(body, CHAT_REFUSED)
    prompt = utf8(template.render(messages_of(body)), "messages")
    stream, include_usage = stream_flags(body)
    top = number(body, "top_logprobs", None, 0, 20, integer=True)
    logprobs = (top or 0) if boolean(body, "logprobs") else None
    if top is not None and logprobs is None:
        raise ApiError(400, "'top_logprobs' needs 'logprobs': true", "top_logprobs")
    if logprobs is not None and stream:
        raise ApiError(400, "'logprobs' is returned for non-streaming requests only", "logprobs")
    reqs, budget = requests_for([prompt], body, cfg, max_tokens_limit, 1, ("max_completion_tokens", "max_tokens"),
                                template.stops, logprobs)
    return Job(reqs, stream, budget, include_usage)


def chat_body(rid: str, model_name: str, gens, texts: list[str], triggers) -> dict:
    choices = [{"index": i, "message": {"role": "assistant", "content": text}, "logprobs": chat_logprobs(g),
                "finish_reason": FINISH[g.stop_reason], "scratchpad": scratchpad_info(g, t)}
               for i, (g, text, t) in enumerate(zip(gens, texts, triggers))]
    return {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": model_name,
            "choices": choices, "usage": usage(gens)}


def chat_logprobs(g) -> dict | None:
    """The chat logprobs object: per generated byte its token, log-prob, bytes and top-k."""
    if g.logprobs is None:
        return None

    def entry(b, lp):
        return {"token": byte_token(b), "logprob": lp, "bytes": [b]}

    return {"content": [{**entry(b, lp), "top_logprobs": [entry(t, v) for t, v in top]}
                        for b, (lp, top) in zip(g.output, g.logprobs)]}


def chat_chunk(rid: str, model_name: str, index: int, text: str, finish=None, gen=None, trigger=None,
               first: bool = False) -> dict:
    """A stream chunk: the first carries the assistant role, the last the finish reason and the
    scratchpad block (with an empty delta)."""
    delta = {"role": "assistant", "content": text} if first else {} if finish else {"content": text}
    choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
    if gen is not None:
        choice["scratchpad"] = scratchpad_info(gen, trigger)
    return {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model_name,
            "choices": [choice]}

"""The classic llamafile server's built-in chat formats, rendered as it renders them (pure).

Classic ``llamafile --server`` (0.8–0.9, llama.cpp's server at b2282) has no Jinja: it picks
one of a few hard-coded prompt layouts by looking for marker substrings in the GGUF's
``tokenizer.chat_template`` (none found → ChatML), and it exposes neither the template nor
the choice over HTTP. To count prompt tokens exactly, or to continue a prefilled reply with
``/completion``, the client must know which layout is applied; the edge finds out with one
probe request and ``identify``/``count_candidates`` below, and the result is cached per server.

The layouts are written from reading ``llama_chat_apply_template_internal`` in llama.cpp
b2282 (``llama-cpp-python==0.2.53``'s vendored tree) and in llamafile 0.9's core library,
which added Llama 3, Phi 3 and a Gemma variant that keeps system text as its own user turn.
The server always asks for the generation prompt (``add_ass``); Llama-2-style layouts have
none. A message's missing or null ``content`` is the empty string, as on the server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any

Messages = Sequence[Mapping[str, Any]]

_C_SPACE = " \t\n\v\f\r"  # what the server's trim() strips (C isspace), not Python's wider set


def _trim(text: str) -> str:
    return text.strip(_C_SPACE)


def _content(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    return content if isinstance(content, str) else ""


def _role(message: Mapping[str, Any]) -> str:
    return str(message.get("role") or "")


@dataclass(frozen=True)
class ChatFormat:
    """One built-in layout: its name (what ``ServerInfo.chat_format`` stores) and renderer."""

    name: str
    render: Callable[[Messages], str]

    def __call__(self, messages: Messages) -> str:
        return self.render(messages)


def _chatml(messages: Messages) -> str:
    turns = "".join(f"<|im_start|>{_role(m)}\n{_content(m)}<|im_end|>\n" for m in messages)
    return turns + "<|im_start|>assistant\n"


def _zephyr(messages: Messages) -> str:
    return "".join(f"<|{_role(m)}|>\n{_content(m)}<|endoftext|>\n" for m in messages) + "<|assistant|>\n"


def _phi3(messages: Messages) -> str:
    return "".join(f"<|{_role(m)}|>\n{_content(m)}<|end|>\n" for m in messages) + "<|assistant|>\n"


def _monarch(messages: Messages) -> str:
    # BOS text before every message but the first (the tokenizer adds the first BOS itself).
    turns = "".join(("<s>" if i else "") + f"{_role(m)}\n{_content(m)}</s>\n" for i, m in enumerate(messages))
    return turns + "<s>assistant\n"


def _gemma_merged(messages: Messages) -> str:
    """b2282: the last system text is put in front of the next non-model turn."""
    out, system = [], ""
    for message in messages:
        role = _role(message)
        if role == "system":
            system = _trim(_content(message))
            continue
        role = "model" if role == "assistant" else role
        out.append(f"<start_of_turn>{role}\n")
        if system and role != "model":
            out.append(system + "\n\n")
            system = ""
        out.append(_trim(_content(message)) + "<end_of_turn>\n")
    return "".join(out) + "<start_of_turn>model\n"


def _gemma_user_turns(messages: Messages) -> str:
    """llamafile 0.9: every non-model role (system included) becomes its own user turn."""
    turns = "".join(
        f"<start_of_turn>{'model' if _role(m) in ('assistant', 'model') else 'user'}\n"
        f"{_trim(_content(m))}<end_of_turn>\n" for m in messages)
    return turns + "<start_of_turn>model\n"


def _llama3(messages: Messages) -> str:
    turns = "".join(f"<|start_header_id|>{_role(m)}<|end_header_id|>\n\n{_trim(_content(m))}<|eot_id|>"
                    for m in messages)
    return turns + "<|start_header_id|>assistant<|end_header_id|>\n\n"


def _llama2(system_tags: bool, space_around: bool, bos_in_history: bool, strip: bool) -> Callable[[Messages], str]:
    """The ``[INST]`` family; each flag is one variant the server reads off the template."""

    def render(messages: Messages) -> str:
        out, inside_turn = ["[INST] "], True  # the first BOS comes from the tokenizer
        pad = " " if space_around else ""
        for message in messages:
            content = _trim(_content(message)) if strip else _content(message)
            role = _role(message)
            if not inside_turn:
                out.append("<s>[INST] " if bos_in_history else "[INST] ")
                inside_turn = True
            if role == "system":
                out.append(f"<<SYS>>\n{content}\n<</SYS>>\n\n" if system_tags else content + "\n")
            elif role == "user":
                out.append(content + " [/INST]")
            else:  # assistant, and any other role, closes the turn
                out.append(f"{pad}{content}{pad}</s>")
                inside_turn = False
        return "".join(out)  # no generation prompt in this family

    return render


def _llama2_name(system_tags: bool, space_around: bool, bos_in_history: bool, strip: bool) -> str:
    flags = [flag for flag, on in (("sys", system_tags), ("space", space_around), ("bos", bos_in_history),
                                   ("strip", strip)) if on]
    return "+".join(["llama2", *flags])


def _all_formats() -> dict[str, ChatFormat]:
    formats = [ChatFormat("chatml", _chatml)]
    formats += [ChatFormat(_llama2_name(*flags), _llama2(*flags)) for flags in product((False, True), repeat=4)]
    formats += [
        ChatFormat("zephyr", _zephyr), ChatFormat("monarch", _monarch), ChatFormat("gemma", _gemma_merged),
        ChatFormat("gemma-user-turns", _gemma_user_turns), ChatFormat("llama3", _llama3), ChatFormat("phi3", _phi3),
    ]
    return {f.name: f for f in formats}


FORMATS: dict[str, ChatFormat] = _all_formats()
"""Every known layout by name; ``chatml`` first (the server's own fallback)."""


def render(name: str, messages: Messages) -> str:
    """The prompt text a classic server using layout ``name`` builds from ``messages``."""
    return FORMATS[name](messages)


def probe_messages(nonce: str) -> list[dict[str, str]]:
    """A short conversation on which every known layout renders differently.

    A system turn (system tags, Gemma merging), a completed assistant turn followed by a user
    turn (BOS inside history, spaces around replies) and padded contents (trimming).
    ``nonce`` makes the rendered prompt easy to find among the server's slots.
    """
    return [
        {"role": "system", "content": f" probe {nonce} "},
        {"role": "user", "content": " hi "},
        {"role": "assistant", "content": " ok "},
        {"role": "user", "content": "go"},
    ]


def identify(rendered: str, messages: Messages) -> str | None:
    """The layout that turns ``messages`` into exactly ``rendered`` (the server's own prompt)."""
    matches = [name for name, fmt in FORMATS.items() if fmt(messages) == rendered]
    return matches[0] if len(matches) == 1 else None


def candidates(messages: Messages) -> Iterator[tuple[str, str]]:
    """(name, rendering) of every layout whose rendering of ``messages`` is distinct."""
    seen: set[str] = set()
    for name, fmt in FORMATS.items():
        text = fmt(messages)
        if text not in seen:
            seen.add(text)
            yield name, text


def match_count(prompt_tokens: int, counts: Mapping[str, int], add_bos: bool) -> str | None:
    """The one candidate whose token count explains ``prompt_tokens``, else None.

    ``counts`` holds each candidate's ``/tokenize`` length (which never includes BOS). None
    when no candidate, or more than one, fits: the caller then estimates instead.
    """
    fits = [name for name, count in counts.items() if count + int(add_bos) == prompt_tokens]
    return fits[0] if len(fits) == 1 else None

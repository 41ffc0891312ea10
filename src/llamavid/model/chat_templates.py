"""Chat templates of the released LLaMA-VID models as data.

The released video and image models were trained with `imgsp_v1` (same text as `vicuna_v1`); the original CLI
used `llava_v1` ("curious human") at inference, a mismatch we do not copy: a converted model's config names the
template it was trained with. Rendering is byte-exact with the original's `Conversation.get_prompt`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from ..errors import UsageError

IMAGE_PLACEHOLDER = "<image>"
VIDEO_PLACEHOLDER = "<video>"

VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
LLAVA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
# SmolLM2-Instruct's default system prompt, as its chat template renders a conversation without a system turn.
SMOLLM_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


@dataclass(frozen=True)
class ChatTemplate:
    """A conversation format: `two` = "ROLE: text" turns with alternating separators, `single` = one separator
    after every turn, `plain` = bare messages, `llama_2` = `[INST]` blocks, `chatml` = `<|im_start|>role\n`
    blocks closed by `sep` (SmolLM2; no system block when `system` is empty)."""

    name: str
    system: str
    roles: tuple[str, str]
    style: Literal["two", "single", "plain", "llama_2", "chatml"]
    sep: str
    sep2: str | None = None

    @property
    def stop_string(self) -> str:
        """What ends an assistant turn; generation stops on it."""
        if self.style == "chatml":
            return self.sep.rstrip("\n")
        return self.sep2 if self.style in ("two", "llama_2") else self.sep

    def render(self, messages: list[tuple[str, str]], add_generation_prompt: bool = True) -> str:
        """Render (role, text) pairs, role in {"user", "assistant"}; an open assistant turn is added when asked."""
        turns = [(self._role(role), text) for role, text in messages]
        if add_generation_prompt and (not turns or turns[-1][0] != self.roles[1]):
            turns.append((self.roles[1], None))
        return getattr(self, f"_render_{self.style}")(turns)

    def render_pieces(self, messages: list[tuple[str, str]]) -> list[tuple[str, bool]]:
        """`render(messages, add_generation_prompt=False)` cut into (text, trained) pieces, in order: trained are
        each assistant message and the stop string that ends it (what a model learns to write), the rest is
        prompt. Derived from `render` itself (each turn is what it adds), so training masks follow the template."""
        marker = "\x00"  # stands for an assistant message, to find where its text starts within its turn
        pieces: list[tuple[str, bool]] = []
        head = self.render([], add_generation_prompt=False)
        if head:
            pieces.append((head, False))
        done = head
        for index, (role, text) in enumerate(messages):
            upto = self.render(messages[: index + 1], add_generation_prompt=False)
            added = upto[len(done) :]
            if not upto.startswith(done):
                raise ValueError(f"the {self.name} template does not render conversations turn by turn")
            if role in ("assistant", "gpt") and text:
                marked = self.render([*messages[:index], (role, marker)], add_generation_prompt=False)
                start = marked.index(marker, len(done)) - len(done)
                stop = added.find(self.stop_string, start) if self.stop_string else -1
                end = len(added) if stop < 0 else stop + len(self.stop_string)
                pieces += [(added[:start], False), (added[start:end], True), (added[end:], False)]
            else:
                pieces.append((added, False))
            done = upto
        return [(piece, trained) for piece, trained in pieces if piece]

    def user_messages(self, prompt: str) -> list[str]:
        """The user messages of a prompt this template rendered, in order (the inverse of `render` for them).

        Servers that receive a rendered prompt, not the messages (vLLM hands a plugin token ids), recover each
        placeholder's turn with it, so its Q-Former prompt is that turn's text as in `build_sample`. A `plain`
        prompt has no role markers: it is one message."""
        if self.style in ("two", "single"):
            opener, closer = f"{self.roles[0]}: ", f"{self.sep}{self.roles[1]}:"
        elif self.style == "chatml":
            opener, closer = f"<|im_start|>{self.roles[0]}\n", self.sep
        elif self.style == "llama_2":
            opener, closer = "[INST] ", " [/INST]"
        else:
            return [prompt]
        messages = []
        for piece in prompt.split(opener)[1:]:
            message = piece.split(closer)[0]
            if self.style == "llama_2" and message.startswith("<<SYS>>\n"):
                message = message.partition("\n<</SYS>>\n\n")[2]
            messages.append(message)
        return messages

    def jinja(self, bos: bool = True) -> str:
        """The same format as a Jinja chat template (what vLLM and transformers render), message contents as
        plain strings. A system message replaces the template's system text. `bos`: start with the tokenizer's
        BOS, for tokenizers that add one to a prompt (chat servers tokenize the rendered text without adding
        special tokens)."""
        literal = lambda text: json.dumps(text, ensure_ascii=False)  # noqa: E731  (a Jinja string literal)
        user, assistant = (literal(role) for role in self.roles)
        head = (
            f"{{%- set ns = namespace(system={literal(self.system)}) -%}}"
            "{%- for m in messages if m['role'] == 'system' -%}{%- set ns.system = m['content'] -%}{%- endfor -%}"
            + ("{{- bos_token -}}" if bos else "")
        )
        turns = "{%- for m in messages if m['role'] != 'system' -%}"
        sep, sep2 = literal(self.sep), literal(self.sep2 or self.sep)
        if self.style in ("two", "single"):
            second = sep2 if self.style == "two" else sep
            body = (
                f"{{{{- ns.system + {sep} -}}}}{turns}"
                f"{{%- if m['role'] == 'user' -%}}{{{{- {user} + ': ' + m['content'] + {sep} -}}}}"
                f"{{%- else -%}}{{{{- {assistant} + ': ' + m['content'] + {second} -}}}}{{%- endif -%}}"
                f"{{%- endfor -%}}{{%- if add_generation_prompt -%}}{{{{- {assistant} + ':' -}}}}{{%- endif -%}}"
            )
        elif self.style == "chatml":
            body = (
                f"{{%- if ns.system -%}}{{{{- '<|im_start|>system\\n' + ns.system + {sep} -}}}}{{%- endif -%}}"
                f"{turns}{{{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + {sep} -}}}}{{%- endfor -%}}"
                "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
            )
        elif self.style == "llama_2":
            body = (
                f"{turns}{{%- if m['role'] == 'user' -%}}"
                "{%- set text = m['content'] -%}"
                "{%- if loop.first and ns.system -%}"
                "{%- set text = '<<SYS>>\\n' + ns.system + '\\n<</SYS>>\\n\\n' + text -%}{%- endif -%}"
                "{{- '[INST] ' + text | trim + ' [/INST]' -}}"
                f"{{%- else -%}}{{{{- ' ' + m['content'] | trim + ' ' + {sep2} -}}}}{{%- endif -%}}{{%- endfor -%}}"
            )
        else:
            body = (
                f"{{{{- ns.system -}}}}{turns}"
                f"{{{{- m['content'] + ({sep} if loop.index0 % 2 == 0 else {sep2}) -}}}}{{%- endfor -%}}"
            )
        return head + body

    def _role(self, role: str) -> str:
        if role in ("user", "human"):
            return self.roles[0]
        if role in ("assistant", "gpt"):
            return self.roles[1]
        raise ValueError(f"Unknown chat role {role!r}: use 'user' or 'assistant'")

    def _render_two(self, turns) -> str:
        seps = (self.sep, self.sep2)
        out = self.system + seps[0]
        for i, (role, text) in enumerate(turns):
            out += f"{role}: {text}{seps[i % 2]}" if text else f"{role}:"
        return out

    def _render_single(self, turns) -> str:
        out = self.system + self.sep
        for role, text in turns:
            out += f"{role}: {text}{self.sep}" if text else f"{role}:"
        return out

    def _render_plain(self, turns) -> str:
        seps = (self.sep, self.sep2 or self.sep)
        return self.system + "".join(text + seps[i % 2] for i, (_, text) in enumerate(turns) if text)

    def _render_llama_2(self, turns) -> str:
        out = ""
        for i, (role, text) in enumerate(turns):
            if not text:
                continue
            if i == 0 and self.system:
                text = f"<<SYS>>\n{self.system}\n<</SYS>>\n\n{text}"
            out += (
                f"[INST] {text.strip()} [/INST]" if role == self.roles[0] else f" {text.strip()} {self.sep2}"
            )
        return out

    def _render_chatml(self, turns) -> str:
        # Difference with the other styles: an empty message is still a block, as in the Jinja template.
        out = f"<|im_start|>system\n{self.system}{self.sep}" if self.system else ""
        for role, text in turns:
            out += f"<|im_start|>{role}\n" + (f"{text}{self.sep}" if text is not None else "")
        return out


TEMPLATES: dict[str, ChatTemplate] = {
    t.name: t
    for t in (
        ChatTemplate("vicuna_v1", VICUNA_SYSTEM, ("USER", "ASSISTANT"), "two", " ", "</s>"),
        ChatTemplate("imgsp_v1", VICUNA_SYSTEM, ("USER", "ASSISTANT"), "two", " ", "</s>"),
        ChatTemplate("llava_v1", LLAVA_SYSTEM, ("USER", "ASSISTANT"), "two", " ", "</s>"),
        ChatTemplate("llava_v0", LLAVA_SYSTEM, ("Human", "Assistant"), "single", "###"),
        ChatTemplate("plain_guided", "", ("", ""), "plain", "\n"),
        ChatTemplate("plain", "", ("", ""), "plain", "\n"),
        ChatTemplate(
            "llama_2",
            "You are a helpful language and vision assistant. You are able to understand the visual content that "
            "the user provides, and assist the user with a variety of tasks using natural language.",
            ("USER", "ASSISTANT"),
            "llama_2",
            "<s>",
            "</s>",
        ),
        ChatTemplate("chatml", SMOLLM_SYSTEM, ("user", "assistant"), "chatml", "<|im_end|>\n"),
        # ChatML without a system block: the demo model's (SmolLM2 answers as well without it, in fewer tokens).
        ChatTemplate("chatml_bare", "", ("user", "assistant"), "chatml", "<|im_end|>\n"),
    )
}


def get_template(name: str) -> ChatTemplate:
    """The template called `name`; the error lists the valid names."""
    try:
        return TEMPLATES[name]
    except KeyError:
        raise UsageError(
            f"Unknown chat template {name!r}; valid names: {', '.join(sorted(TEMPLATES))}"
        ) from None


__all__ = [
    "ChatTemplate",
    "IMAGE_PLACEHOLDER",
    "SMOLLM_SYSTEM",
    "TEMPLATES",
    "VIDEO_PLACEHOLDER",
    "get_template",
]

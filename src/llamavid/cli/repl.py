"""The conversation loop of `llamavid chat` and `llamavid demo`: questions about a medium, answers streamed as
they are generated, and the slash commands of the interactive mode.

Answers are generated in the calling (main) thread, printed piece by piece. Two ways to print:

* `transcript=False` (chat): stdout carries only the answers, so `llamavid chat --prompt ... > answer.txt`
  captures exactly the answer; prompts, notices and errors go to stderr;
* `transcript=True` (demo): stdout is a readable transcript: the medium, `USER:` questions and `ASSISTANT:`
  answers.

`remember=False` (the demo) asks every question on its own, as the demo model was trained; otherwise later
questions continue the conversation.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import LlamaVidError, UsageError

HELP = (
    "commands: /media PATH (talk about another image, video or feature file), /text (no medium), "
    "/reset (new conversation), /save FILE, /exit"
)


class Conversation:
    def __init__(self, engine, settings, template: str | None = None, media: str | None = None,
                 remember: bool = True, transcript: bool = False, out=None, err=None):
        self.engine, self.settings, self.template = engine, settings, template
        self.remember, self.transcript = remember, transcript
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.messages: list[tuple[str, str]] = []
        self.media = None
        self.media_path: str | None = None
        if media:
            self.set_media(media)

    def notice(self, text: str) -> None:
        print(text, file=self.out if self.transcript else self.err, flush=True)

    def set_media(self, path: str | None) -> None:
        """Talk about `path` from now on (None: no medium); its vision pass runs now, once."""
        self.media = self.engine.encode_media(path) if path is not None else None
        self.media_path = None if path is None else str(path)
        self.messages = []

    def ask(self, question: str) -> str:
        """Print the answer to `question` as it is generated; returns it."""
        messages = [*self.messages, ("user", question)] if self.remember else [("user", question)]
        if self.transcript:
            self.out.write("ASSISTANT: ")
            self.out.flush()
        answer = self.engine.answer(messages, self.media, self.template, self.settings, on_text=self._write)
        self.out.write("\n")
        self.out.flush()
        if self.remember:
            self.messages = [*messages, ("assistant", answer.strip())]
        return answer.strip()

    def _write(self, piece: str) -> None:
        self.out.write(piece)
        self.out.flush()

    def save(self, path: str) -> None:
        record = {"media": self.media_path, "messages": [{"role": r, "content": c} for r, c in self.messages]}
        Path(path).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")

    def interact(self, lines=None) -> int:
        """Read questions and commands line by line until /exit or the end of input. A user mistake (a bad
        /media path, a prompt too long) ends the turn with one line, not the session."""
        lines = lines or sys.stdin
        tty = lines.isatty() if hasattr(lines, "isatty") else False
        if tty:
            print(HELP, file=self.err)
        while True:
            if self.transcript or tty:
                stream = self.out if self.transcript else self.err
                print("USER: ", end="", file=stream, flush=True)
            line = lines.readline()
            if not line:  # end of input
                return 0
            text = line.strip()
            if not text:
                continue
            try:
                if not self.command(text):
                    return 0
            except LlamaVidError as error:
                print(f"error: {error}", file=self.err, flush=True)

    def command(self, text: str) -> bool:
        """Run one line; False ends the session."""
        name, _, argument = text.partition(" ")
        argument = argument.strip()
        if name in ("/exit", "/quit"):
            return False
        if name == "/reset":
            self.messages = []
            self.notice("(new conversation)")
        elif name in ("/media", "/video"):
            if not argument:
                raise UsageError(f"usage: {name} PATH")
            self.set_media(argument)
            self.notice(f"media: {argument}")
        elif name == "/text":
            self.set_media(None)
            self.notice("no media: plain questions")
        elif name == "/save":
            if not argument:
                raise UsageError("usage: /save FILE")
            self.save(argument)
            self.notice(f"(saved to {argument})")
        elif name.startswith("/"):
            raise UsageError(f"unknown command {name}; {HELP}")
        else:
            self.ask(text)
        return True


__all__ = ["HELP", "Conversation"]

"""`llamavid chat`: one-shot (`--prompt`) or interactive conversations about an image, a video or nothing.

stdout carries only the answer (streamed as it is generated); everything else (banners, progress, errors) goes
to stderr, so `llamavid chat --prompt ... > answer.txt` captures exactly the answer.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "commands: /reset (new conversation), /media PATH (talk about another file), /save FILE, /exit"


def register(commands) -> None:
    parser = commands.add_parser("chat", help=run.__doc__, description=run.__doc__)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--image", help="image file to talk about")
    source.add_argument("--video", help="video file or folder of frames to talk about")
    source.add_argument(
        "--features", help="movie feature file (llamavid extract-features, or the original's .pkl)"
    )
    parser.add_argument("--model", required=True, help="llamavid model folder (see `llamavid convert`)")
    parser.add_argument("--prompt", help="ask this one question, print the answer and exit")
    parser.add_argument("--template", help="chat template (default: the one the model was trained with)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--seed", type=int, help="same seed, same answer")
    parser.add_argument("--fps", type=float, help="video frames per second (default: the model's, 1)")
    parser.add_argument("--max-frames", type=int, help="at most this many frames, spread uniformly")
    parser.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), or a torch device name")
    parser.add_argument("--dtype", default="auto", help="auto, float32, float16 or bfloat16")
    bits = parser.add_mutually_exclusive_group()
    bits.add_argument(
        "--load-4bit", action="store_true", help="quantize the LLM to 4 bits (bitsandbytes, CUDA)"
    )
    bits.add_argument(
        "--load-8bit", action="store_true", help="quantize the LLM to 8 bits (bitsandbytes, CUDA)"
    )
    parser.add_argument("--cache-dir", help="keep vision features on disk here, reused across sessions")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Chat with a model about an image, a video, or just text."""
    from ..inference.engine import ChatEngine, GenerationSettings
    from ..model.chat_templates import get_template

    settings = GenerationSettings(args.temperature, args.top_p, args.max_new_tokens, args.seed)
    if args.template:
        get_template(args.template)  # fail before loading the model
    bits = 4 if args.load_4bit else 8 if args.load_8bit else None
    engine = ChatEngine.from_pretrained(
        args.model,
        device=args.device,
        dtype=args.dtype,
        bits=bits,
        cache_dir=args.cache_dir,
        fps=args.fps,
        max_frames=args.max_frames,
    )
    session = Session(engine, settings, args.template, args.image or args.video or args.features)
    if args.prompt is not None:
        session.ask(args.prompt)
        return 0
    return session.interact()


class Session:
    """A conversation: its messages, its media, and the slash commands of the interactive mode."""

    def __init__(self, engine, settings, template: str | None, media: str | None):
        self.engine, self.settings, self.template = engine, settings, template
        self.messages: list[tuple[str, str]] = []
        self.media = None
        self.media_path = None
        if media:
            self.set_media(media)

    def set_media(self, path: str) -> None:
        self.media = self.engine.encode_media(path)  # vision pass now, once; later turns reuse it
        self.media_path = path
        self.messages = []

    def ask(self, question: str) -> str:
        self.messages.append(("user", question))
        pieces = []
        try:
            for piece in self.engine.chat(self.messages, self.media, self.template, self.settings):
                pieces.append(piece)
                sys.stdout.write(piece)
                sys.stdout.flush()
        except BaseException:
            self.messages.pop()
            raise
        sys.stdout.write("\n")
        answer = "".join(pieces).strip()
        self.messages.append(("assistant", answer))
        return answer

    def save(self, path: str) -> None:
        record = {"media": self.media_path, "messages": [{"role": r, "content": c} for r, c in self.messages]}
        Path(path).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")

    def interact(self) -> int:
        from . import USER_ERRORS

        interactive = sys.stdin.isatty()
        if interactive:
            print(HELP, file=sys.stderr)
        while True:
            if interactive:
                print("USER: ", end="", file=sys.stderr, flush=True)
            line = sys.stdin.readline()
            if not line:  # end of input
                return 0
            text = line.strip()
            if not text:
                continue
            try:
                if not self.command(text):
                    return 0
            except (
                USER_ERRORS
            ) as error:  # a bad /media path or an over-long prompt ends the turn, not the session
                print(f"error: {error}", file=sys.stderr)

    def command(self, text: str) -> bool:
        """Run one line; False ends the session."""
        name, _, argument = text.partition(" ")
        if name == "/exit":
            return False
        if name == "/reset":
            self.messages = []
            print("(new conversation)", file=sys.stderr)
        elif name == "/media":
            if not argument.strip():
                raise ValueError("usage: /media PATH")
            self.set_media(argument.strip())
            print(f"(now talking about {argument.strip()})", file=sys.stderr)
        elif name == "/save":
            if not argument.strip():
                raise ValueError("usage: /save FILE")
            self.save(argument.strip())
            print(f"(saved to {argument.strip()})", file=sys.stderr)
        elif name.startswith("/"):
            raise ValueError(f"unknown command {name}; {HELP}")
        else:
            self.ask(text)
        return True

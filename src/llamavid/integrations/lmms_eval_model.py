"""llamavid as an lmms-eval model: `lmms-eval --model llamavid --model_args pretrained=DIR_OR_NAME,...`.

Everything runs through our `ChatEngine`: media are encoded by its encoder (videos at the model's `video_fps` by
our frame rule, decoded at their own size and resized by the image processor, as `llamavid eval` does), prompts are
built with the model's own chat template, every medium's Q-Former prompt is its turn's question, and answers come
from its batched generator. Requests are grouped so that one `generate` serves every request with the same decoding
settings and compatible media.

lmms-eval ranks multiple-choice options by the *smallest* value `loglikelihood` returns (its built-in models
return a loss), so ours returns the negative log-probability of the continuation, summed over its tokens.

Under `accelerate launch -m lmms_eval ...`, each process loads the model on its own device and reports its rank
and the world size; lmms-eval gives each process its own shard of the documents.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence

import torch
from lmms_eval.api.instance import Instance

try:
    from lmms_eval.api.instance import GenerationResult
except ImportError:  # lmms-eval before 0.7 keeps results as they are
    GenerationResult = None
from lmms_eval.api.model import lmms
from tqdm import tqdm

from ..errors import UsageError
from ..inference.engine import ChatEngine
from ..inference.generation import GenerationSettings
from ..inference.inputs import Sample, Turn, build_sample, collate
from ..inference.loading import load_model

logger = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 128
"""When a task says nothing: lmms-eval's own default of 1024 mostly measures how long a model can ramble."""


class LlamaVid(lmms):
    """The simple interface: requests carry the prompt text and a `doc_to_visual` for their document."""

    is_simple = True
    _gen_kwargs_index = 1  # where a generate request's args hold its gen_kwargs (chat requests: 2)

    def __init__(
        self,
        pretrained: str,
        device: str = "auto",
        dtype: str = "auto",
        fps: float | None = None,
        max_frames: int | None = None,
        batch_size: int | str = 1,
        feature_cache: str | None = None,
        seed: int | None = None,
        template: str | None = None,
        **unknown,
    ):
        super().__init__()
        if unknown:
            accepted = "pretrained, device, dtype, fps, max_frames, batch_size, feature_cache, seed, template"
            raise UsageError(f"llamavid does not take model_args {', '.join(sorted(unknown))}; it takes {accepted}")
        from accelerate import PartialState

        state = PartialState()
        self._rank, self._world_size = state.process_index, state.num_processes
        if device == "auto" and state.num_processes > 1:
            device = str(state.device)  # one device per process
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 1
        model, processor = load_model(pretrained, device=device, dtype=dtype)
        self.engine = ChatEngine.for_evaluation(model, processor, feature_cache, fps=fps, max_frames=max_frames)
        self.seed = seed
        self.template = template

    @property
    def model(self):
        return self.engine.model

    @property
    def device(self) -> torch.device:
        return self.engine.device

    # -- requests -> turns -------------------------------------------------------------------------------------

    def _document(self, task: str, split: str, doc_id: int):
        return self.task_dict[task][split][doc_id]

    def _media(self, visuals) -> list:
        """Features of a request's visuals: PIL images, video or image paths, frame arrays; None for none."""
        if visuals is None:
            return []
        if not isinstance(visuals, (list, tuple)):
            visuals = [visuals]
        media = []
        for visual in visuals:
            if isinstance(visual, (list, tuple)):
                media += self._media(visual)
            elif isinstance(visual, dict):
                raise UsageError(
                    f"llamavid cannot take a visual given as a dict (keys {sorted(visual)}): give a path, a PIL "
                    "image or a frame array"
                )
            else:
                media.append(self.engine.encode_media(visual))
        return media

    def _turns(self, request: Instance) -> tuple[list[Turn], str | None]:
        context, _, doc_to_visual, doc_id, task, split = request.args
        visuals = doc_to_visual(self._document(task, split, doc_id)) if doc_to_visual else None
        return [Turn("user", context, self._media(visuals))], None

    def _settings(self, gen_kwargs: dict) -> tuple[GenerationSettings, list[str]]:
        """The task's decoding: greedy unless it asks to sample, its `max_new_tokens`, its `until` strings."""
        kwargs = dict(gen_kwargs or {})
        until = kwargs.pop("until", None) or []
        until = [until] if isinstance(until, str) else list(until)
        if int(kwargs.get("num_beams") or 1) > 1:
            logger.warning("llamavid decodes without beam search; num_beams=%s is ignored", kwargs["num_beams"])
        temperature = float(kwargs.get("temperature") or 0.0)
        if kwargs.get("do_sample") is False:
            temperature = 0.0
        settings = GenerationSettings(
            temperature=temperature,
            top_p=float(kwargs.get("top_p") or 1.0),
            max_new_tokens=int(kwargs.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS),
            seed=self.seed,
        )
        return settings, [stop for stop in until if stop]

    def _sample(self, turns: list[Turn], system: str | None, answer_prefix: str = "") -> Sample:
        return build_sample(self.engine.processor, turns, system, self.template, answer_prefix)

    # -- the interface ---------------------------------------------------------------------------------------

    def generate_until(self, requests: list[Instance]) -> list[str]:
        prepared = []
        for request in tqdm(requests, desc="llamavid: media", disable=self.rank != 0 or len(requests) < 2):
            settings, stops = self._settings(request.args[self._gen_kwargs_index])
            prepared.append((self._sample(*self._turns(request)), settings, stops))
        answers: list[str | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for index, item in enumerate(prepared):
            groups.setdefault(_group_key(item), []).append(index)
        progress = tqdm(total=len(requests), desc="llamavid: answers", disable=self.rank != 0)
        for group in groups.values():
            for start in range(0, len(group), self.batch_size):
                batch = group[start : start + self.batch_size]
                samples = [prepared[i][0] for i in batch]
                texts = self.engine.answer_batch(samples, prepared[batch[0]][1], [prepared[i][2] for i in batch])
                for i, text in zip(batch, texts, strict=True):
                    answers[i] = text.strip()
                progress.update(len(batch))
        progress.close()
        return answers

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        """(negative log-probability of the continuation, whether greedy decoding would produce it), per request."""
        results = []
        for request in tqdm(requests, desc="llamavid: log-likelihoods", disable=self.rank != 0):
            context, target, doc_to_visual, doc_id, task, split = request.args
            document = self._document(task, split, doc_id)
            continuation = target if isinstance(target, str) else target(document)
            visuals = doc_to_visual(document) if doc_to_visual else None
            turns = [Turn("user", context, self._media(visuals))]
            results.append(_passed_through(self._score(turns, str(continuation))))
        return results

    def _score(self, turns: list[Turn], continuation: str) -> tuple[float, bool]:
        prompt = self._sample(turns, None)
        full = self._sample(turns, None, continuation)
        shared = next((i for i, (a, b) in enumerate(zip(prompt.ids, full.ids, strict=False)) if a != b), len(prompt.ids))
        scored = torch.tensor(full.ids[shared:])
        if scored.numel() == 0:
            return 0.0, True
        inputs = collate(self.engine.processor, [full], self.device)
        with torch.inference_mode():
            logits = self.engine.model(**inputs).logits[0, -scored.numel() - 1 : -1].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        scored = scored.to(logprobs.device)
        value = -logprobs.gather(1, scored[:, None]).sum().item()
        return value, bool((logprobs.argmax(-1) == scored).all())

    def generate_until_multi_round(self, requests: list[Instance]) -> list[tuple[str, ...]]:
        """Conversations lmms-eval continues round by round: each round's question is a new user turn after the
        previous answers, showing the media given so far (or the round's own, when it brings some)."""
        results = []
        for request in tqdm(requests, desc="llamavid: conversations", disable=self.rank != 0):
            context, gen_kwargs, doc_to_visual, doc_to_text, doc_id, task, split = request.args
            document = self._document(task, split, doc_id)
            settings, stops = self._settings(gen_kwargs)
            turns = [Turn("user", context, self._media(doc_to_visual(document) if doc_to_visual else None))]
            answers: list[str] = []
            info = None
            for round_index in itertools.count():
                if round_index:
                    visuals, context, finished, _, info = doc_to_text(
                        document, previous_output=answers, round_idx=round_index, previous_round_info=info
                    )
                    if finished:
                        break
                    turns += [Turn("assistant", answers[-1]), Turn("user", context, self._media(visuals))]
                answers.append(self.engine.answer_batch([self._sample(turns, None)], settings, [stops])[0].strip())
            results.append(tuple(answers))
        return results


class LlamaVidChat(LlamaVid):
    """The chat interface: requests carry `doc_to_messages`, OpenAI-style messages whose content lists text and
    media parts; a system message replaces the template's system prompt."""

    is_simple = False
    _gen_kwargs_index = 2

    def _turns(self, request: Instance) -> tuple[list[Turn], str | None]:
        from lmms_eval.protocol import ChatMessages

        _, doc_to_messages, _, doc_id, task, split = request.args
        messages = ChatMessages(messages=doc_to_messages(self._document(task, split, doc_id))).messages
        turns, system = [], None
        for message in messages:
            text = "\n".join(part.text for part in message.content if part.type == "text")
            if message.role == "system":
                system = text
                continue
            visuals = [part.url for part in message.content if part.type in ("image", "video")]
            if any(part.type == "audio" for part in message.content):
                raise UsageError("llamavid takes images and videos, not audio")
            turns.append(Turn(message.role, text, self._media(visuals)))
        return turns, system


    def generate_until_multi_round(self, requests: list[Instance]) -> list[tuple[str, ...]]:
        raise UsageError(
            "lmms-eval's chat interface has no multi-round requests for llamavid: run the task with --force_simple"
        )


def _passed_through(result: tuple[float, bool]):
    """lmms-eval 0.7.3's evaluator keeps a model's result as is only when it is text or a `GenerationResult`; a
    plain (value, is_greedy) pair becomes its `str()`, which multiple-choice scoring cannot unpack. A
    `GenerationResult` carrying the pair reaches the task unchanged."""
    if GenerationResult is None:
        return result
    return GenerationResult(text=result)


def _group_key(prepared: tuple[Sample, GenerationSettings, Sequence[str]]) -> tuple:
    sample, settings, _ = prepared
    return (sample.batch_key, settings.batch_key, settings.max_new_tokens)


__all__ = ["LlamaVid", "LlamaVidChat"]

"""The one generator (`llamavid.inference.generation`): settings -> `generate` arguments, stop strings, streaming,
per-row stopping, and every route to an answer agreeing on it."""

from __future__ import annotations

import queue
import threading

import pytest
import torch

from llamavid.eval.base import Item, Request
from llamavid.eval.runner import AnswerGenerator
from llamavid.inference.engine import ChatEngine
from llamavid.inference.generation import (
    GenerationSettings,
    Row,
    TextStream,
    generate_arguments,
    generator_for,
    held_back_length,
)
from llamavid.inference.inputs import collate
from llamavid.model.chat_templates import TEMPLATES, VICUNA_SYSTEM, ChatTemplate
from llamavid.serve.server import Server
from llamavid.serve.settings import ServeSettings
from llamavid.testing import tiny_model_and_processor

# A template whose end-of-turn text is not the EOS token, and one this tiny model writes: every route must stop on it
HASH_STOP = ChatTemplate("hash_stop", VICUNA_SYSTEM, ("USER", "ASSISTANT"), "single", "#")


def test_held_back_is_the_longest_suffix_that_could_start_a_stop_string():
    assert held_back_length("answer ##", ["###"]) == 2
    assert held_back_length("answer #", ["###", "</s>"]) == 1
    assert held_back_length("answer </", ["###", "</s>"]) == 2
    assert held_back_length("answer", ["###"]) == 0
    assert held_back_length("##", ["###"]) == 2


class _Characters:
    """A tokenizer whose tokens are characters: token i is chr(i)."""

    @staticmethod
    def decode(tokens, skip_special_tokens=True):
        return "".join(map(chr, tokens))


def test_streamed_text_never_shows_a_stop_string_or_the_start_of_one():
    stream, shown, seen = TextStream(_Characters(), ["END"]), "", {}
    for character in "one EN two END three":
        piece, stopped = stream.push(ord(character))
        shown += piece
        seen[len(seen) + 1] = shown
        if stopped:
            break
    assert stopped and shown == "one EN two "
    assert seen[len("one E")] == seen[len("one EN")] == "one "  # held back: could have been the stop string
    assert seen[len("one EN ")] == "one EN "  # released once it was not
    assert seen[len("one EN two E")] == seen[len("one EN two EN")] == "one EN two "


def test_greedy_and_sampling_arguments():
    assert generate_arguments(GenerationSettings(), pad_token_id=7, max_new_tokens=5) == {
        "max_new_tokens": 5, "do_sample": False, "pad_token_id": 7,
    }
    sampled = generate_arguments(GenerationSettings(temperature=0.7, top_p=0.9), 0, 5)
    assert sampled["do_sample"] and sampled["temperature"] == 0.7 and sampled["top_p"] == 0.9
    assert sampled["top_k"] == 0  # no top-k cut unless asked for
    assert generate_arguments(GenerationSettings(temperature=0.2, top_k=50), 0, 5)["top_k"] == 50


def test_settings_are_checked_with_the_field_named():
    for field, value in (("temperature", -1), ("top_p", 0), ("max_new_tokens", 0), ("top_k", -1)):
        with pytest.raises(ValueError, match=field):
            GenerationSettings(**{field: value})


def test_one_generator_a_model_whoever_asks():
    model, processor = tiny_model_and_processor(seed=1)
    assert generator_for(model, processor) is generator_for(model, processor)
    assert ChatEngine(model, processor).generator is ChatEngine(model, processor).generator
    other, _ = tiny_model_and_processor(seed=1)
    assert generator_for(other, processor) is not generator_for(model, processor)


def test_generations_on_one_model_never_overlap():
    """Two threads asking at once: the model's generate runs one call at a time."""
    model, processor = tiny_model_and_processor(seed=1)
    engine = ChatEngine(model, processor)
    running, overlaps, original = [], [], model.generate

    def watched(*args, **kwargs):
        running.append(1)
        overlaps.append(len(running))
        try:
            return original(*args, **kwargs)
        finally:
            running.pop()

    model.generate = watched
    threads = [
        threading.Thread(target=engine.answer, args=([("user", f"Question {i}")],), kwargs={"max_new_tokens": 12})
        for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(overlaps) == 4 and max(overlaps) == 1


@pytest.fixture
def hash_model(monkeypatch):
    monkeypatch.setitem(TEMPLATES, HASH_STOP.name, HASH_STOP)
    model, processor = tiny_model_and_processor(seed=2)
    model.config.chat_template = HASH_STOP.name
    return model, processor


def _server_answer(engine, question: str, max_tokens: int) -> str:
    from llamavid.inference.inputs import Turn

    server = Server(engine, ServeSettings(web=False))
    try:
        events: queue.Queue = queue.Queue()
        server.submit(server.sample([Turn("user", question)]), GenerationSettings(),
                      lambda kind, value: events.put((kind, value)), max_tokens)
        text = ""
        while (event := events.get(timeout=60))[0] == "text":
            text += event[1]
        return text
    finally:
        server.close()


def test_every_route_gives_the_same_answer_and_stops_at_the_templates_stop_string(hash_model):
    model, processor = hash_model
    engine = ChatEngine(model, processor)
    unstopped = engine.answer([("user", "Hi")], template="vicuna_v1", max_new_tokens=40)
    answer = engine.answer([("user", "Hi")], max_new_tokens=40)
    assert "#" in unstopped and "#" not in answer and answer, "the stop string must matter for this question"
    assert "".join(engine.chat([("user", "Hi")], max_new_tokens=40)) == answer
    assert _server_answer(engine, "Hi", 40) == answer
    evaluated = AnswerGenerator(model, processor).answer([Item(0, [Request("Hi", "Hi")], None)], 40, 0.0)
    assert evaluated == [[answer]]


def test_every_route_stops_where_the_context_ends():
    """A prompt near the end of the context: no route generates past the positions the LLM has."""
    model, processor = tiny_model_and_processor(seed=2)
    engine = ChatEngine(model, processor)
    room = 12
    model.config.text_config.max_position_embeddings = len(engine.sample([("user", "Hi")]).ids) + room
    answer = engine.answer([("user", "Hi")], max_new_tokens=40)
    assert _server_answer(engine, "Hi", 40) == answer
    assert AnswerGenerator(model, processor).answer([Item(0, [Request("Hi", "Hi")], None)], 40, 0.0) == [[answer]]
    with torch.no_grad():  # what the LLM says in its last positions, and what it would say past them
        inputs = engine.build_inputs([("user", "Hi")])
        tokens = model.generate(**inputs, max_new_tokens=40, min_new_tokens=40, do_sample=False)[0]
    new = tokens[inputs["input_ids"].shape[1] :]
    assert answer == processor.decode(new[:room]) != processor.decode(new)


def test_a_row_that_ignores_eos_runs_to_its_budget_beside_one_that_stops():
    """vLLM's `ignore_eos`: with the model made to say EOS first, the plain row ends after one token and the
    other, in the same batch, goes on to its budget."""
    model, processor = tiny_model_and_processor(seed=2)
    engine = ChatEngine(model, processor)
    eos = processor.tokenizer.eos_token_id
    with torch.no_grad():
        model.get_output_embeddings().bias = torch.nn.Parameter(torch.zeros(model.config.text_config.vocab_size))
        model.get_output_embeddings().bias[eos] = 1e4
    samples = [engine.sample([("user", "Hi")])] * 2
    rows = [Row(9), Row(9, ignore_eos=True)]
    inputs = collate(processor, samples, engine.device)
    engine.generator.run(inputs, rows, GenerationSettings(temperature=0))
    assert (rows[0].finish_reason, rows[0].completion_tokens) == ("stop", 1)
    assert (rows[1].finish_reason, rows[1].completion_tokens) == ("length", 9)

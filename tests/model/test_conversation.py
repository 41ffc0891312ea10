import pytest

from llamavid.model.chat_templates import TEMPLATES, get_template

SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions."
)


def test_vicuna_v1_single_turn_is_byte_exact():
    text = get_template("vicuna_v1").render([("user", "<image>\nWhat is this?")])
    assert text == f"{SYSTEM} USER: <image>\nWhat is this? ASSISTANT:"


def test_vicuna_v1_multi_turn_separators():
    text = get_template("imgsp_v1").render(
        [("user", "Q1"), ("assistant", "A1"), ("user", "Q2")], add_generation_prompt=True
    )
    assert text == f"{SYSTEM} USER: Q1 ASSISTANT: A1</s>USER: Q2 ASSISTANT:"
    closed = get_template("vicuna_v1").render(
        [("user", "Q1"), ("assistant", "A1")], add_generation_prompt=False
    )
    assert closed == f"{SYSTEM} USER: Q1 ASSISTANT: A1</s>"


def test_llava_v1_uses_the_human_wording():
    text = get_template("llava_v1").render([("user", "Hi")])
    assert text.startswith("A chat between a curious human") and "the human's questions." in text


def test_llava_v0_and_plain():
    assert get_template("llava_v0").render([("user", "Hi")]).endswith("###Human: Hi###Assistant:")
    assert (
        get_template("plain_guided").render([("user", "<image>"), ("assistant", "a cat")], False)
        == "<image>\na cat\n"
    )


def test_unknown_template_lists_valid_names():
    with pytest.raises(ValueError, match="valid names: .*vicuna_v1"):
        get_template("vicuna")
    assert {"vicuna_v1", "imgsp_v1", "llava_v1", "llava_v0", "plain_guided"} <= set(TEMPLATES)


def test_unknown_role():
    with pytest.raises(ValueError, match="Unknown chat role"):
        get_template("vicuna_v1").render([("system", "x")])


def test_stop_strings():
    assert get_template("vicuna_v1").stop_string == "</s>"
    assert get_template("llava_v0").stop_string == "###"


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_render_pieces_cut_the_rendering_into_prompt_and_what_is_learned(name):
    """Joined, the pieces are the rendering; the trained ones are each assistant message with the stop string
    that ends it, and nothing of a user's."""
    template = TEMPLATES[name]
    conversation = [("user", "<image>\nWhat is it?"), ("assistant", "A cat."), ("user", "And?"), ("assistant", "Dogs.")]
    pieces = template.render_pieces(conversation)
    assert "".join(text for text, _ in pieces) == template.render(conversation, add_generation_prompt=False)
    trained = [text for text, learned in pieces if learned]
    between = " " if template.style == "llama_2" else ""  # [INST] ... [/INST] answer </s>
    assert [text.strip() for text in trained] == [f"{answer}{between}{template.stop_string}".strip()
                                                  for answer in ("A cat.", "Dogs.")]
    assert not any("What is it" in text or "And?" in text for text in trained)

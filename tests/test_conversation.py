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

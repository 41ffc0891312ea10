import pytest

from llamavid.model.chat_templates import LLAVA_SYSTEM, VICUNA_SYSTEM

CORPUS = [
    VICUNA_SYSTEM,
    LLAVA_SYSTEM,
    "USER: What colour is the square? ASSISTANT: red</s>",
    "Describe the video.\nThe circle moves left, then the triangle appears. [INST] [/INST] <<SYS>>",
    "Which shape appeared first? Answer with one word. circle square triangle green blue yellow up down",
    "You are a helpful language and vision assistant.",
] * 20


@pytest.fixture(scope="session")
def sp_tokenizer(tmp_path_factory):
    """A real sentencepiece BPE LLaMA tokenizer (legacy), trained in the test session."""
    from llamavid.toy.tiny import train_sentencepiece_llama_tokenizer

    return train_sentencepiece_llama_tokenizer(CORPUS, 400, tmp_path_factory.mktemp("sp"))

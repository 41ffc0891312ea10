"""Outputs appear whole or not at all, even with several writers of the same file."""

import threading

import pytest

from llamavid.atomic_files import atomic_write, leftovers, partial_path, write_text_atomically
from llamavid.toy.tiny import train_qformer_tokenizer, train_sentencepiece_llama_tokenizer


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "answers.json"
    write_text_atomically(target, "old")
    with pytest.raises(RuntimeError), atomic_write(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert leftovers(target) == []


def test_leftovers_are_the_targets_own_temporaries_only(tmp_path):
    target = tmp_path / "movie.safetensors"
    mine = partial_path(target)
    mine.write_bytes(b"x")
    other = tmp_path / ".movie.safetensors.4242.partial"  # an older writer's naming, same pattern
    other.write_bytes(b"x")
    (tmp_path / ".movie2.safetensors.1.partial").write_bytes(b"x")
    (tmp_path / "movie.safetensors").write_bytes(b"done")
    assert leftovers(target) == sorted([mine, other])
    assert leftovers(tmp_path / "missing" / "a.srt") == []


def test_concurrent_writers_never_show_a_reader_half_a_file(tmp_path):
    target = tmp_path / "qformer_tokenizer" / "vocab.txt"
    text = "".join(f"word{i}\n" for i in range(20000))
    stop = threading.Event()
    seen = []

    def write():
        while not stop.is_set():
            write_text_atomically(target, text)

    def read():
        while not stop.is_set():
            if target.exists():
                seen.append(target.read_text() == text)

    threads = [threading.Thread(target=write) for _ in range(3)] + [threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    threading.Event().wait(1.0)
    stop.set()
    for thread in threads:
        thread.join()
    assert seen and all(seen)
    assert leftovers(target) == []


def test_toy_tokenizers_trained_twice_into_one_folder_are_whole(tmp_path):
    corpus = ["what is in the video?", "a red ball rolls left.", "the cat sits on the mat"] * 5
    first = train_qformer_tokenizer(corpus, tmp_path / "qformer")
    second = train_qformer_tokenizer(corpus, tmp_path / "qformer")
    assert first.get_vocab() == second.get_vocab()
    llama = train_sentencepiece_llama_tokenizer(corpus, directory=tmp_path / "tokenizer")
    again = train_sentencepiece_llama_tokenizer(corpus, directory=tmp_path / "tokenizer")
    assert llama("a red ball").input_ids == again("a red ball").input_ids
    assert sorted(p.name for p in (tmp_path / "tokenizer").iterdir()) == ["tokenizer.model", "tokenizer.vocab"]

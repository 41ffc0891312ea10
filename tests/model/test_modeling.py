import pytest
import torch

from llamavid import LlamaVidForConditionalGeneration, LlamaVidProcessor
from llamavid.model.processing import Video
from llamavid.model.transformers_compat import CACHE_KEY
from llamavid.testing import save_model_folder, tiny_model_and_processor


def _chat(processor, question, placeholder="<image>"):
    return processor.render_chat([("user", f"{placeholder}\n{question}" if placeholder else question)])


def test_visual_token_shapes_and_no_nans(tiny, image, video):
    model, processor = tiny
    inputs = processor(
        _chat(processor, "Describe.", "<video>"), media=[Video(video)], qformer_text="Describe."
    )
    with torch.no_grad():
        out = model(**inputs)
    frames, per_frame = video.shape[0], model.config.tokens_per_frame
    assert out.visual_tokens.shape == (frames * per_frame, model.config.text_config.hidden_size)
    assert out.logits.shape == (*inputs["input_ids"].shape, model.config.text_config.vocab_size)
    assert torch.isfinite(out.logits).all()


@pytest.mark.parametrize(("compress", "grid"), [("none", None), ("mean", None), ("grid", 2)])
def test_each_compression_produces_its_token_count(compress, grid, image):
    model, processor = tiny_model_and_processor(compress=compress, grid_size=grid)
    inputs = processor(_chat(processor, "What colour?"), media=[image], qformer_text="What colour?")
    with torch.no_grad():
        out = model(**inputs)
    assert (
        out.visual_tokens.shape[0]
        == model.config.tokens_per_frame
        == {"none": 17, "mean": 2, "grid": 5}[compress]
    )


def test_determinism_under_seed(image):
    a, processor = tiny_model_and_processor(seed=3)
    b, _ = tiny_model_and_processor(seed=3)
    c, _ = tiny_model_and_processor(seed=4)
    inputs = processor(_chat(processor, "Hi"), media=[image], qformer_text="Hi")
    with torch.no_grad():
        la, lb, lc = (m(**inputs).logits for m in (a, b, c))
    torch.testing.assert_close(la, lb)
    assert not torch.allclose(la, lc)


def test_save_load_round_trip(tiny, image, tmp_path):
    model, processor = tiny
    save_model_folder(model, processor, tmp_path)
    loaded = LlamaVidForConditionalGeneration.from_pretrained(tmp_path).eval()
    loaded_processor = LlamaVidProcessor.from_pretrained(tmp_path)
    assert list(tmp_path.glob("*.safetensors"))
    text = _chat(processor, "What is this?")
    inputs = processor(text, media=[image], qformer_text="What is this?")
    again = loaded_processor(text, media=[image], qformer_text="What is this?")
    for key in inputs:
        torch.testing.assert_close(inputs[key], again[key])
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, loaded(**again).logits)


def test_auto_classes_load_our_folder(tiny, tmp_path):
    from transformers import AutoConfig, AutoModelForImageTextToText

    model, _ = tiny
    model.save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)).__name__ == "LlamaVidConfig"
    assert isinstance(AutoModelForImageTextToText.from_pretrained(tmp_path), LlamaVidForConditionalGeneration)


def test_generate_length_and_text_only(tiny):
    model, processor = tiny
    inputs = processor(_chat(processor, "Name three colours.", placeholder=None))
    assert "pixel_values" not in inputs
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=7, min_new_tokens=7, do_sample=False)
    assert out.shape == (1, inputs["input_ids"].shape[1] + 7)


def test_mixed_batch_matches_one_by_one(tiny, image, video):
    """Images, a video and a text-only prompt in one left-padded batch give each sample's own answer."""
    model, processor = tiny
    samples = [
        (_chat(processor, "What colour is it?"), [image], "What colour is it?"),
        (
            _chat(processor, "Describe the video in detail.", "<video>"),
            [Video(video)],
            "Describe the video in detail.",
        ),
        (_chat(processor, "Is there a cat?", placeholder=None), [], None),
    ]
    batch = processor(
        [s[0] for s in samples], media=[s[1] for s in samples], qformer_text=[s[2] for s in samples]
    )
    with torch.no_grad():
        together = model.generate(**batch, max_new_tokens=6, do_sample=False)[
            :, batch["input_ids"].shape[1] :
        ]
        for row, (text, media, prompt) in enumerate(samples):
            single = processor(text, media=media, qformer_text=prompt)
            alone = model.generate(**single, max_new_tokens=6, do_sample=False)[
                :, single["input_ids"].shape[1] :
            ]
            assert together[row].tolist() == alone[0].tolist()


def test_several_placeholders_each_with_its_prompt(tiny, image):
    """Multi-turn training: every turn re-shows the image with that turn's question."""
    model, processor = tiny
    text = processor.render_chat(
        [("user", "<image>\nWhat colour?"), ("assistant", "Red."), ("user", "<image>\nWhat shape?")]
    )
    inputs = processor(text, media=[image], qformer_text=["What colour?", "What shape?"])
    assert inputs["segment_media_index"].tolist() == [0, 0]
    with torch.no_grad():
        tokens = model(**inputs).visual_tokens
        per_frame = model.config.tokens_per_frame
        first = model(
            **processor(_chat(processor, "x"), media=[image], qformer_text="What colour?")
        ).visual_tokens
        second = model(
            **processor(_chat(processor, "x"), media=[image], qformer_text="What shape?")
        ).visual_tokens
    torch.testing.assert_close(tokens[:per_frame], first)
    torch.testing.assert_close(tokens[per_frame:], second)
    # the content token depends on the image only, the context token on the question too
    torch.testing.assert_close(first[1:], second[1:])
    assert not torch.allclose(first[:1], second[:1])


def test_mismatched_placeholder_count_is_a_clear_error(tiny, image):
    model, processor = tiny
    inputs = processor(_chat(processor, "Hi"), media=[image], qformer_text="Hi")
    ids = inputs["input_ids"]
    position = int((ids[0] == model.config.image_token_id).nonzero()[0])
    inputs["input_ids"] = torch.cat([ids[:, :position], ids[:, position + 1 :]], dim=1)
    inputs["attention_mask"] = inputs["attention_mask"][:, 1:]
    with pytest.raises(ValueError, match=r"1 visual placeholder tokens but the media give 2 visual tokens"):
        model(**inputs)


def test_chunking_does_not_change_tokens(image, video):
    model, processor = tiny_model_and_processor(qformer_chunk_size=1)
    big, _ = tiny_model_and_processor(qformer_chunk_size=1000)
    inputs = processor(
        [_chat(processor, "A?"), _chat(processor, "B?", "<video>")],
        media=[[image], [Video(video)]],
        qformer_text=["A?", "B?"],
    )
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).visual_tokens, big(**inputs).visual_tokens)


def test_precomputed_features_without_cls(tiny, video):
    """Long-video features are stored without CLS: the Q-Former then sees patches only, as in the original."""
    model, processor = tiny
    pixels = processor.preprocess(Video(video))
    ids, mask = processor.tokenize_qformer(["What happens?"])
    with torch.no_grad():
        features = model.get_vision_features(pixels)
        with_cls = model.get_visual_tokens(features, ids, mask, torch.tensor([len(pixels)]))
        without = model.get_visual_tokens(
            features[:, 1:], ids, mask, torch.tensor([len(pixels)]), vision_features_include_cls=False
        )
    assert with_cls.shape == without.shape
    content = torch.arange(with_cls.shape[0]) % model.config.tokens_per_frame != 0
    torch.testing.assert_close(with_cls[content], without[content])  # content tokens never see CLS


def test_loss_ignores_visual_positions(tiny, image):
    model, processor = tiny
    inputs = processor(_chat(processor, "Hi"), media=[image], qformer_text="Hi")
    labels = inputs["input_ids"].clone()
    with torch.no_grad():
        out = model(**inputs, labels=labels)
    assert torch.isfinite(out.loss)


def test_backward_with_gradient_checkpointing(image):
    model, processor = tiny_model_and_processor(seed=1)
    model.train()
    # transformers 5.23 renamed gradient_checkpointing_enable (a deprecated alias from then on)
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()
    assert any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
    inputs = processor(_chat(processor, "What colour?"), media=[image], qformer_text="What colour?")
    out = model(**inputs, labels=inputs["input_ids"].clone())
    out.loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
    assert grads["token_generator.context_projector.weight"] is not None
    assert grads["token_generator.qformer.encoder.layer.0.crossattention.attention.query.weight"] is not None
    assert grads["language_model.model.layers.0.mlp.up_proj.weight"] is not None


def test_kv_cache_round_trip_matches_a_full_forward(tiny, image):
    """The cache a forward returns, handed back under `cache`, continues the sequence exactly (on every supported
    transformers, whatever it calls the cache)."""
    model, processor = tiny
    inputs = processor(_chat(processor, "What colour?"), media=[image], qformer_text="What colour?")
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    step = torch.tensor([[7, 11]])
    with torch.no_grad():
        prefill = model(**inputs, use_cache=True)
        cache = prefill[CACHE_KEY]
        assert cache.get_seq_length() == ids.shape[1]
        continued = model(
            input_ids=step,
            attention_mask=torch.cat([mask, torch.ones_like(step)], dim=1),
            cache=cache,
            use_cache=True,
        )
        full = model(**{**inputs, "input_ids": torch.cat([ids, step], dim=1),
                        "attention_mask": torch.cat([mask, torch.ones_like(step)], dim=1)})
    assert continued[CACHE_KEY].get_seq_length() == ids.shape[1] + 2
    torch.testing.assert_close(continued.logits, full.logits[:, -2:], rtol=1e-4, atol=1e-5)

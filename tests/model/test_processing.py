import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, ProcessorMixin
from transformers.models.auto.processing_auto import PROCESSOR_MAPPING
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from llamavid.model.modeling import LlamaVidForConditionalGeneration
from llamavid.model.processing import LlamaVidProcessor, Video, pad_colour, pad_to_square
from llamavid.toy.demo import DEMO_MODEL


def test_pad_to_square_centres_on_the_truncated_mean_colour():
    image = Image.new("RGB", (5, 2), (255, 0, 0))
    colour = pad_colour([0.48145466, 0.4578275, 0.40821073])
    assert colour == (122, 116, 104)
    square = np.asarray(pad_to_square(image, colour))
    assert square.shape == (5, 5, 3)
    assert (square[1:3] == (255, 0, 0)).all()  # offset (5 - 2) // 2 = 1
    assert (square[0] == colour).all() and (square[3:] == colour).all()


def test_images_are_padded_but_video_frames_are_not(tiny):
    _, processor = tiny
    wide = np.zeros((10, 40, 3), dtype=np.uint8)
    wide[:, :, 0] = 255
    image_pixels = processor.preprocess(wide)
    video_pixels = processor.preprocess(Video(wide[None]))
    assert image_pixels.shape == video_pixels.shape == (1, 3, 28, 28)
    assert not torch.allclose(image_pixels, video_pixels)
    assert torch.allclose(video_pixels[0, 0], video_pixels[0, 0, 0, 0])  # all red: cropped, no border


def test_each_chunk_is_tokenized_alone_and_later_bos_dropped(tiny):
    model, processor = tiny
    tok = processor.tokenizer
    text = "USER: <image>\nWhat colour? ASSISTANT:"
    ids = processor.tokenize(text, [3])
    first, second = tok("USER: ").input_ids, tok("\nWhat colour? ASSISTANT:").input_ids
    assert first[0] == tok.bos_token_id and second[0] == tok.bos_token_id
    assert ids == first + [model.config.image_token_id] * 3 * model.config.tokens_per_frame + second[1:]


def test_video_placeholder_expands_to_frames_times_tokens(tiny, video):
    model, processor = tiny
    inputs = processor("<video>\nDescribe.", media=[Video(video)], qformer_text="Describe.")
    count = int((inputs["input_ids"] == model.config.image_token_id).sum())
    assert count == video.shape[0] * model.config.tokens_per_frame
    assert inputs["media_frame_counts"].tolist() == [video.shape[0]]


def test_left_and_right_padding(tiny):
    _, processor = tiny
    left = processor(["Hi", "A much longer question about colours"])
    right = processor(["Hi", "A much longer question about colours"], padding_side="right")
    assert left["attention_mask"][0, -1] == 1 and left["attention_mask"][0, 0] == 0
    assert right["attention_mask"][0, 0] == 1 and right["attention_mask"][0, -1] == 0
    with pytest.raises(ValueError, match="padding_side"):
        processor(["Hi"], padding_side="middle")


def test_a_repeated_qformer_prompt_is_tokenized_once(tiny, monkeypatch):
    _, processor = tiny
    prompts = ["Who leaves?"] * 3 + ["a longer question about the red circle", "Who leaves?"]
    tokenizer = processor.qformer_tokenizer
    whole = tokenizer(prompts, padding="longest", truncation=True, max_length=processor.config.qformer_max_length,
                      return_tensors="pt")  # every prompt, as one call
    seen = []
    monkeypatch.setattr(processor, "qformer_tokenizer", lambda texts, **kw: seen.append(texts) or tokenizer(texts, **kw))
    ids, mask = processor.tokenize_qformer(prompts)
    assert seen == [["Who leaves?", "a longer question about the red circle"]]
    assert ids.equal(whole["input_ids"]) and mask.equal(whole["attention_mask"])


def test_qformer_prompts_are_left_truncated(tiny):
    _, processor = tiny
    limit = processor.config.qformer_max_length
    words = " ".join(["red"] * (limit * 2) + ["blue", "circle"])
    ids, mask = processor.tokenize_qformer([words, "red"])
    tok = processor.qformer_tokenizer
    assert ids.shape == (2, limit)
    assert ids[0, 0] == tok.cls_token_id and ids[0, -1] == tok.sep_token_id
    assert tok.convert_ids_to_tokens(ids[0, -3:-1].tolist()) == ["blue", "circle"]  # the end survives
    assert mask[1].sum() == 3
    assert tok.bos_token == "[DEC]" and tok.bos_token_id == len(tok) - 1
    assert "[DEC]" not in tok.convert_ids_to_tokens(ids[0].tolist())


@pytest.mark.parametrize(
    ("text", "media", "message"),
    [
        ("<image> and <image>", [[1, 2, 3]], "2 visual placeholders and 3 media items"),
        ("no placeholder", [[np.zeros((4, 4, 3), np.uint8)]], "0 visual placeholders and 1 media items"),
    ],
)
def test_placeholder_and_media_mismatch_is_explained(tiny, text, media, message):
    _, processor = tiny
    with pytest.raises(ValueError, match=message):
        processor([text], media=media)


def test_unsupported_media_type_is_a_clear_error(tiny):
    _, processor = tiny
    with pytest.raises(TypeError, match="Unsupported media item of type str"):
        processor(["<image>"], media=[["picture.png"]])
    with pytest.raises(ValueError, match="shape"):
        processor.preprocess(np.zeros((4, 4), np.uint8))


def test_one_prompt_per_placeholder(tiny, image):
    _, processor = tiny
    with pytest.raises(ValueError, match="3 Q-Former prompts for 2 visual placeholders"):
        processor(["<image> a <image> b"], media=[[image]], qformer_text=[["a", "b", "c"]])
    inputs = processor(["<image> a <image> b"], media=[[image, image]], qformer_text=[["a", "b"]])
    assert inputs["segment_media_index"].tolist() == [0, 1]
    assert inputs["pixel_values"].shape[0] == 2


def _same_inputs(first, second):
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def test_auto_processor_opens_a_saved_folder_with_the_same_outputs(tiny, image, video, tmp_path):
    model, processor = tiny
    model.config.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert not (tmp_path / "processor_config.json").exists()  # the settings live in config.json only
    assert not (tmp_path / "chat_template.jinja").exists()
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert type(loaded) is LlamaVidProcessor
    assert type(loaded.image_processor) is CLIPImageProcessorPil
    assert loaded.config.to_dict() == model.config.to_dict()
    for text, media, prompt in [
        ("USER: <image>\nWhat colour? ASSISTANT:", [image], "What colour?"),
        ("USER: <video>\nDescribe. ASSISTANT:", [Video(video)], "Describe."),
    ]:
        expected = processor(text, media=media, qformer_text=prompt)
        assert "pixel_values" in expected and "qformer_input_ids" in expected
        _same_inputs(loaded(text, media=media, qformer_text=prompt), expected)


def test_importing_the_model_registers_the_processor_with_auto_processor():
    assert PROCESSOR_MAPPING[LlamaVidForConditionalGeneration.config_class] is LlamaVidProcessor


def test_auto_processor_opens_the_bundled_demo_folder_without_an_llm_tokenizer(image, video):
    loaded = AutoProcessor.from_pretrained(DEMO_MODEL)
    direct = LlamaVidProcessor.from_pretrained(DEMO_MODEL)
    assert type(loaded) is LlamaVidProcessor and loaded.tokenizer is None
    assert type(loaded.image_processor) is CLIPImageProcessorPil
    assert loaded.config.to_dict() == direct.config.to_dict()
    image_pixels = loaded.preprocess(image)
    assert image_pixels.shape == (1, 3, 64, 64)
    assert torch.equal(image_pixels, direct.preprocess(image))
    assert torch.equal(loaded.preprocess(Video(video)), direct.preprocess(Video(video)))
    ids, mask = loaded.tokenize_qformer(["Which shape moved left first, the red circle?"])
    tok = loaded.qformer_tokenizer
    assert tok.unk_token_id not in ids[0].tolist() and tok.bos_token == "[DEC]"
    assert tok.convert_ids_to_tokens(ids[0, -3:-1].tolist()) == ["circle", "?"]
    expected_ids, expected_mask = direct.tokenize_qformer(["Which shape moved left first, the red circle?"])
    assert torch.equal(ids, expected_ids) and torch.equal(mask, expected_mask)


def test_processor_is_a_transformers_processor_whose_dict_leaves_the_config_out(tiny):
    model, processor = tiny
    assert isinstance(processor, ProcessorMixin)
    assert processor.get_attributes() == ["image_processor", "tokenizer", "qformer_tokenizer"]
    assert processor.chat_template is None  # the template is the one named by config.chat_template
    described = processor.to_dict()
    assert set(described) == {"image_processor", "processor_class"}
    assert described["processor_class"] == "LlamaVidProcessor"
    adapter = LlamaVidProcessor(processor.image_processor, None, processor.qformer_tokenizer, model.config)
    assert adapter.tokenizer is None and adapter.config is model.config
    swapped = (processor.tokenizer, processor.image_processor, processor.qformer_tokenizer)
    with pytest.raises(TypeError, match="image_processor"):
        LlamaVidProcessor(*swapped, model.config)

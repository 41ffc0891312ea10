"""Run in a fresh process: the memory plan's need for a movie question next to the measured peak resident memory.
The model's LLM (1024 wide, 2 layers, float32) has a 150K-token vocabulary, so that its weights, not the
interpreter, make most of the peak while its prefill stays cheap on a CPU. Prints one JSON line."""

import gc
import json
import sys
from pathlib import Path

import torch

from llamavid.inference import memory_plan
from llamavid.inference.engine import ChatEngine
from llamavid.inference.feature_files import FeatureFile, write_feature_file
from llamavid.inference.generation import GenerationSettings
from llamavid.testing import process_memory, tiny_model_and_processor

QUESTION = "what happens at the end of the movie"
FRAMES = 600
LLM = {"hidden_size": 1024, "intermediate_size": 2048, "num_hidden_layers": 2, "num_attention_heads": 8,
       "num_key_value_heads": 8, "max_position_embeddings": 8192, "vocab_size": 150_000}


def main() -> None:
    folder = Path(sys.argv[1])
    model, processor = tiny_model_and_processor(seed=0, text_overrides=LLM, max_sequence_length=8192)
    gc.collect()
    config = model.config
    shape = (FRAMES, 1 + config.num_patches, config.vision_config.hidden_size)
    path = folder / "movie.safetensors"
    write_feature_file(path, FeatureFile(torch.randn(shape).half(), [float(i) for i in range(FRAMES)],
                                         [["two words"]] * FRAMES))
    engine = ChatEngine(model, processor, kv_cache_dtype="auto")
    engine.generator.configure(prefill_chunk_size=1024)
    workload = memory_plan.workload_for(processor, QUESTION, 8, features=path)
    settings = memory_plan.Settings(torch.float32, None, "auto", "cpu", prefill_chunk_size=1024)
    plan = memory_plan.plan_question(config, workload, settings)
    movie = engine.load_movie(path)
    engine.answer([("user", QUESTION)], media=movie, settings=GenerationSettings(max_new_tokens=8))
    print(json.dumps({"plan_gb": plan.need / 1e9, "peak_gb": process_memory("VmHWM") / 1e9,
                      "prompt_tokens": workload.prompt_tokens, "stage": plan.stage,
                      "parts": {k: round(v / 1e9, 3) for k, v in plan.parts.items()}}))


if __name__ == "__main__":
    main()

"""Run in a fresh process: the peak memory the question-dependent stage adds over the features it reads, for the
7B long-video token generator at its real widths (EVA features 256 x 1408, Q-Former 768, LLM 4096) with its
Q-Former cut to 2 of 12 layers (one cross-attention: the test is about what grows with the frames, and a CPU
without bf16 matrix units runs the full Q-Former at a few frames a second). Float32 weights: the float16 features
are cast chunk by chunk. Prints `frames peak_bytes features_bytes` per size.

The peak is the growth of VmHWM over the resident set at the start of the call, less the file-backed pages the
call faulted in (library code evicted under memory pressure and read back is not the stage's memory). Run it with
`MALLOC_MMAP_THRESHOLD_` fixed: glibc otherwise raises its mmap threshold after a large free and serves the next
large blocks from memory it kept, so a pass's peak would depend on what the pass before it freed."""

import sys

import torch

from llamavid.model.modeling import VisualTokenGenerator
from llamavid.testing import process_memory, reset_peak_memory
from llamavid.toy.release_layout import converted_config, original_config


def main() -> None:
    chunk, sizes = int(sys.argv[1]), [int(n) for n in sys.argv[2:]]
    torch.manual_seed(0)
    config = converted_config(original_config("llama-vid-7b-full-224-long-video", 1), 224)
    config.qformer_chunk_size = chunk
    config.qformer_config.num_hidden_layers = 2
    generator = VisualTokenGenerator(config).eval()
    ids = torch.randint(0, 1000, (1, 12))
    mask = torch.ones_like(ids)
    width, patches = config.vision_config.hidden_size, config.num_patches
    with torch.inference_mode():
        for frames in [chunk, *sizes]:  # the first pass warms the thread pools and the allocator up
            features = torch.randn(frames, patches, width).to(torch.float16)  # a movie as stored: no CLS, float16
            rows = torch.arange(frames)
            reset_peak_memory()
            before, file_before = process_memory("VmHWM"), process_memory("RssFile")
            tokens = generator(features, ids, mask, rows, torch.zeros_like(rows), include_cls=False)
            peak = process_memory("VmHWM") - before - max(0, process_memory("RssFile") - file_before)
            assert tokens.shape == (frames, config.tokens_per_frame, config.text_config.hidden_size)
            if frames in sizes:
                print(frames, peak, features.numel() * features.element_size(), flush=True)
            del tokens, features


if __name__ == "__main__":
    main()

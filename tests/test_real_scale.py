"""The released size, with the LLM cut to one layer: a release-shaped random checkpoint at the real widths
(Vicuna-7B's 4096, the real BERT-base Q-Former, LAVIS's float16 EVA-ViT-G with 40 blocks) converted by
`llamavid convert` within a memory ceiling, then loaded in its stored bf16 and answering. Slow: it writes
about 3.4 GB and converts it (about a minute on 2 cores)."""

import json
import subprocess
import sys

import pytest
import torch

from llamavid.testing import write_release_checkpoint

CONVERT_AND_REPORT_PEAK = """
import resource, sys
from llamavid.cli import main
code = main(sys.argv[1:])
print("PEAK", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
sys.exit(code)
"""


@pytest.fixture(scope="module")
def converted_7b_width(tmp_path_factory):
    root = tmp_path_factory.mktemp("real-width")
    release = write_release_checkpoint(
        root / "release", size="7b", llm_layers=1, variant="llama-vid-7b-full-224-long-video"
    )
    out = root / "converted"
    result = subprocess.run(
        [sys.executable, "-c", CONVERT_AND_REPORT_PEAK, "convert", *release.convert_arguments(),
         "--out", str(out), "--dtype", "bfloat16"],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    peak = int(result.stdout.split("PEAK")[-1])
    return release, out, peak


def test_conversion_peak_stays_below_one_input_shard_plus_the_eva_file(converted_7b_width):
    """Before streaming, the peak was the input files plus 4 bytes a parameter (10.3 GB here); now the model is
    never built and each output shard is made alone (measured: 2.6 GB, against 1.4 + 2.0 GB of input files)."""
    release, out, peak = converted_7b_width
    ceiling = release.largest_shard_bytes + release.eva_path.stat().st_size
    assert peak < ceiling, f"convert peaked at {peak / 1e9:.2f} GB, ceiling {ceiling / 1e9:.2f} GB"
    config = json.loads((out / "config.json").read_text())
    assert config["text_config"]["hidden_size"] == 4096 and config["dtype"] == "bfloat16"
    assert config["text_config"]["rope_parameters"]["factor"] == 16.0  # the long-video release's linear x16


def test_real_width_model_loads_in_its_stored_bf16_and_answers(converted_7b_width):
    from llamavid.inference.loading import load_model

    _, out, _ = converted_7b_width
    model, processor = load_model(out, device="cpu", dtype="auto")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.config.vision_config.num_hidden_layers == 39 and model.config.num_query == 32
    inputs = processor(processor.render_chat([("user", "What colour is the square?")]))
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert output.shape[1] == inputs["input_ids"].shape[1] + 3

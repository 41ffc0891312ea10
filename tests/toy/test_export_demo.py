"""The demo export (`llamavid.toy.export`, run by scripts/export_demo.py): what of a trained demo run goes into the
package (ours and small) and what stays out (run by-products, the base LLM's tokenizer)."""

import json


def test_export_keeps_the_model_and_the_qformer_tokenizer_and_drops_run_by_products(tmp_path):
    from llamavid.toy.export import export_model

    run = tmp_path / "run"
    stage2 = run / "stage2"
    files = {
        "config.json": "{}", "visual.safetensors": "w", "llm_adapter/adapter_model.safetensors": "w",
        "qformer_tokenizer/tokenizer.json": "{}", "qformer_tokenizer/vocab.txt": "a",
        "tokenizer.json": "{}", "tokenizer_config.json": "{}", "figures.json": "{}", "stage_settings.json": "{}",
        "checkpoint-100/model.safetensors": "w",
    }
    for name, text in files.items():
        (stage2 / name).parent.mkdir(parents=True, exist_ok=True)
        (stage2 / name).write_text(text)
    (run / "figures.json").write_text(json.dumps({
        "recipe": "demo-smollm2", "stage0": {"steps": 5, "grounding_log": [0.1]}, "stage1": {"steps": 3},
        "stage2_direction": {"steps": 7, "losses": [1.0]}, "stage2": {"steps": 100, "losses": [1.0]},
        "evaluation": {"accuracy": 0.5},
    }))
    target = tmp_path / "demo_model"
    export_model(run, target, note="resumed once")
    shipped = {str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()}
    assert shipped == {"config.json", "visual.safetensors", "llm_adapter/adapter_model.safetensors",
                       "qformer_tokenizer/tokenizer.json", "qformer_tokenizer/vocab.txt", "training.json"}
    record = json.loads((target / "training.json").read_text())
    assert record["evaluation"] == {"accuracy": 0.5} and record["note"] == "resumed once"
    assert record["stage0"] == {"steps": 5}  # logs stay out, figures go in, every stage in the recipe's order
    assert [k for k in record if k.startswith("stage")] == ["stage0", "stage1", "stage2_direction", "stage2"]
    assert record["stage2_direction"] == {"steps": 7} and record["stage2"] == {"steps": 100}

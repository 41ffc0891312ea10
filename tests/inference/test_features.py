import torch

from llamavid.inference.features import FeatureCache, cache_key, file_digest, vision_fingerprint
from llamavid.testing import tiny_model_and_processor


def test_memory_lru_and_disk_round_trip(tmp_path):
    cache = FeatureCache(tmp_path, memory_items=1)
    a, b = {"features": torch.ones(2, 3)}, {"features": torch.zeros(1, 3)}
    cache.put("a", a)
    cache.put("b", b)  # evicts "a" from memory; it stays on disk
    assert cache.get("a")["features"].equal(a["features"])
    assert FeatureCache(tmp_path).get("b")["features"].equal(b["features"])
    assert not list(tmp_path.glob("*.tmp*"))
    assert FeatureCache().get("a") is None


def test_hits_and_misses_are_counted():
    cache = FeatureCache()
    assert cache.get("k") is None
    cache.put("k", {"x": torch.ones(1)})
    assert cache.get("k")["x"].equal(torch.ones(1)) and cache.get("k") is not None
    assert cache.hits == 2 and cache.misses == 1


def test_damaged_cache_file_is_a_miss(tmp_path):
    (tmp_path / "k.safetensors").write_bytes(b"not a safetensors file")
    assert FeatureCache(tmp_path).get("k") is None


def test_keys_depend_on_content_settings_and_tower(tmp_path):
    one, two = tmp_path / "one.bin", tmp_path / "two.bin"
    one.write_bytes(b"same")
    two.write_bytes(b"same")
    assert file_digest(one) == file_digest(two)
    model_a, processor = tiny_model_and_processor(seed=0)
    model_b, _ = tiny_model_and_processor(seed=1)
    fa, fb = vision_fingerprint(model_a, processor.image_processor), vision_fingerprint(model_b)
    assert fa != fb
    digest = file_digest(one)
    assert cache_key(digest, {"fps": 1}, fa) == cache_key(digest, {"fps": 1}, fa)
    assert cache_key(digest, {"fps": 1}, fa) != cache_key(digest, {"fps": 2}, fa)
    assert cache_key(digest, {"fps": 1}, fa) != cache_key(digest, {"fps": 1}, fb)


def test_fingerprint_samples_each_tensor_but_sees_any_tower_change():
    """The digest reads a sample of each vision tensor (start, middle, end), not the whole 2 GB tower; a change
    of values there, of a shape or of a dtype gives another digest."""
    import torch

    model, processor = tiny_model_and_processor(seed=0)
    before = vision_fingerprint(model, processor.image_processor)
    weight = model.vision_tower.model.encoder.layers[0].mlp.fc1.weight
    with torch.no_grad():
        weight.view(-1)[weight.numel() // 2] += 1.0
    assert vision_fingerprint(model, processor.image_processor) != before
    assert vision_fingerprint(model.to(torch.bfloat16), processor.image_processor) != before

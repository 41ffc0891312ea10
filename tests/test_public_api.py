"""The public API: `llamavid`'s lazy exports name the objects of the modules that define them."""

from __future__ import annotations

import importlib

import pytest

EXPORTS = [
    ("llamavid.model.configuration", "LlamaVidConfig"),
    ("llamavid.model.modeling", "LlamaVidForConditionalGeneration"),
    ("llamavid.model.processing", "LlamaVidProcessor"),
    ("llamavid.inference.engine", "ChatEngine"),
    ("llamavid.inference.loading", "load_model"),
]


@pytest.mark.parametrize(("module", "name"), EXPORTS)
def test_lazy_exports_name_the_defining_modules_objects(module, name):
    assert getattr(importlib.import_module("llamavid"), name) is getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("alias", ["engine", "loading", "configuration", "modeling", "processing"])
def test_the_pre_release_alias_modules_are_gone(alias):
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(f"llamavid.{alias}")


def test_the_tiny_model_helper_keeps_its_name_and_signature():
    from llamavid.testing import tiny_model_and_processor

    model, processor = tiny_model_and_processor(seed=0, compress="grid", grid_size=2)
    assert model.config.compress == "grid" and processor.config is model.config


def test_user_errors_share_one_base_class():
    from llamavid.errors import LlamaVidError
    from llamavid.eval.data import EvalDataError
    from llamavid.inference.feature_files import FeatureFileError
    from llamavid.inference.inputs import ContextLengthError
    from llamavid.inference.loading import ModelLoadError
    from llamavid.media import MediaError
    from llamavid.model.configuration import ConfigError
    from llamavid.model.convert import ConversionError
    from llamavid.toy.demo import DemoUnavailable
    from llamavid.train.data import DataError
    from llamavid.train.recipe import RecipeError

    for error in (EvalDataError, FeatureFileError, ContextLengthError, ModelLoadError, MediaError, ConfigError,
                  ConversionError, DemoUnavailable, DataError, RecipeError):
        assert issubclass(error, LlamaVidError), error

"""The public API's import paths, old and new, name the same objects."""

from __future__ import annotations

import importlib

import pytest

OLD_AND_NEW = [
    ("llamavid.loading", "llamavid.inference.loading", "load_model"),
    ("llamavid.loading", "llamavid.inference.adapter_folder", "save_adapter_model"),
    ("llamavid.engine", "llamavid.inference.engine", "ChatEngine"),
    ("llamavid.modeling", "llamavid.model.modeling", "LlamaVidForConditionalGeneration"),
    ("llamavid.processing", "llamavid.model.processing", "LlamaVidProcessor"),
    ("llamavid.processing", "llamavid.model.processing", "Video"),
    ("llamavid.configuration", "llamavid.model.configuration", "LlamaVidConfig"),
    ("llamavid", "llamavid.model.configuration", "LlamaVidConfig"),
    ("llamavid", "llamavid.model.modeling", "LlamaVidForConditionalGeneration"),
    ("llamavid", "llamavid.model.processing", "LlamaVidProcessor"),
    ("llamavid", "llamavid.inference.engine", "ChatEngine"),
    ("llamavid", "llamavid.inference.loading", "load_model"),
]


@pytest.mark.parametrize(("old", "new", "name"), OLD_AND_NEW)
def test_old_paths_keep_working(old, new, name):
    assert getattr(importlib.import_module(old), name) is getattr(importlib.import_module(new), name)


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

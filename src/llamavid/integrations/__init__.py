"""Hooks that other tools find through entry points. Kept import-light: lmms-eval calls `lmms_eval_manifests` on
every `import lmms_eval.models`, so nothing here imports torch or the model."""

from __future__ import annotations

MODEL_CLASSES = "llamavid.integrations.lmms_eval_model"


def lmms_eval_manifests():
    """lmms-eval's registration of `--model llamavid`: the chat interface (preferred by lmms-eval) and the simple
    one (`--force_simple`)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(
        "llamavid",
        simple_class_path=f"{MODEL_CLASSES}.LlamaVid",
        chat_class_path=f"{MODEL_CLASSES}.LlamaVidChat",
    )


__all__ = ["lmms_eval_manifests"]

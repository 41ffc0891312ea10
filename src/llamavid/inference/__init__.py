"""The inference layer over the model: loading a model folder, encoding media into vision features (cached), the
one builder that turns a conversation into model inputs, the one owner of `model.generate`, and `ChatEngine`,
which the command line, the server, the evaluator and the demo all use."""

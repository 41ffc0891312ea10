"""The model layer, in transformers' style: configuration, modeling, processing, chat templates and the importer of
the released checkpoints. Nothing here knows about files of media, serving, evaluation or training; importing
`llamavid.model.modeling` registers the model with transformers' Auto classes."""

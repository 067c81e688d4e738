"""Generators of the reference pages in ``docs/`` (private: not part of the runtime API).

- :mod:`._docgen.api`: the Python API reference, ``python -m hybridpot._docgen.api
  docs/python-api.md``;
- :mod:`._docgen.train_config`: the training configuration reference,
  ``python -m hybridpot._docgen.train_config docs/training.md``;
- :mod:`._docgen.model_config`: the model configuration reference,
  ``python -m hybridpot._docgen.model_config docs/model-config.md``;
- :mod:`._docgen.sections`: replacing the generated text between two markers of a page.

``tests/test_docs.py``, ``tests/train/test_docs.py`` and ``tests/model/test_config_docs.py``
check that the committed pages are current.
"""

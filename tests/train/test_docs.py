"""The committed config reference in docs/training.md matches the config dataclasses."""

import dataclasses
from pathlib import Path

from hybridpot._docgen.train_config import BEGIN, END, config_reference, field_docs
from hybridpot.train.config import SECTIONS

DOC = Path(__file__).resolve().parents[2] / "docs" / "training.md"


def test_every_field_has_a_docstring():
    for cls in SECTIONS:
        docs = field_docs(cls)
        missing = [f.name for f in dataclasses.fields(cls) if not docs.get(f.name)]
        assert not missing, f"{cls.__name__} fields without a docstring: {missing}"


def test_committed_reference_is_up_to_date():
    text = DOC.read_text()
    committed = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert committed == "\n" + config_reference(), (
        "docs/training.md is out of date: run "
        "python -m hybridpot._docgen.train_config docs/training.md"
    )
    for cls in SECTIONS:
        for f in dataclasses.fields(cls):
            assert f"{f.name}`" in committed

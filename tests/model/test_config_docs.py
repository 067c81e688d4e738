"""docs/model-config.md is generated from ModelConfig and must match the code."""

from pathlib import Path

from hybridpot._docgen.model_config import config_reference_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "model-config.md"


def test_model_config_reference_is_current():
    assert DOC.read_text() == config_reference_markdown(), (
        "docs/model-config.md is stale: regenerate it with "
        "python -m hybridpot._docgen.model_config docs/model-config.md"
    )

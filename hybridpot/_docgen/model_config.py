"""The model configuration reference (``docs/model-config.md``), generated from the code.

Every field of :class:`hybridpot.model.config.ModelConfig`: its type, its default (from
:mod:`hybridpot.hyperparameters`) and its docstring. Regenerate the page with
``python -m hybridpot._docgen.model_config docs/model-config.md``
(``tests/model/test_config_docs.py`` checks that the committed page is current).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import sys
from pathlib import Path

from ..model.config import ModelConfig


def config_reference_markdown() -> str:
    """The configuration reference (docs/model-config.md), generated from the field docstrings."""
    source = inspect.getsource(ModelConfig)
    tree = ast.parse(source).body[0]
    docs: dict[str, str] = {}
    body = tree.body
    for node, nxt in zip(body, body[1:] + [None]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr):
            docs[node.target.id] = " ".join(str(nxt.value.value).split())
    lines = [
        "# Model configuration reference",
        "",
        "Generated from the field docstrings of `hybridpot.model.config.ModelConfig` "
        "by `python -m hybridpot._docgen.model_config docs/model-config.md`; "
        "`tests/model/test_config_docs.py` keeps it current.",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for f in dataclasses.fields(ModelConfig):
        if f.default is not dataclasses.MISSING:
            default = f"`{f.default!r}`"
        elif f.default_factory is not dataclasses.MISSING:
            default = f"`{f.default_factory()!r}`"
        else:
            default = "required"
        type_name = str(f.type).replace("|", "\\|")
        lines.append(f"| `{f.name}` | `{type_name}` | {default} | {docs.get(f.name, '')} |")
    return "\n".join(lines) + "\n"


def update_document(path: str | Path) -> bool:
    """Write :func:`config_reference_markdown` to ``path``; True when the file changed."""
    path = Path(path)
    new = config_reference_markdown()
    if path.exists() and path.read_text() == new:
        return False
    from ..fileio import atomic_write_text  # imports torch: only when writing

    atomic_write_text(path, new)
    return True


if __name__ == "__main__":
    for name in sys.argv[1:] or ["docs/model-config.md"]:
        print(f"{name}: {'updated' if update_document(name) else 'up to date'}")

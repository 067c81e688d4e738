"""Where data-set reading used to live; the code is now in :mod:`hybridpot.data.dataset`.

Kept so that scripts written against the old path (including the team's fixed
yardsticks, which import ``hybridpot.train.dataset.graphs_from_structures``) keep
working. New code imports from :mod:`hybridpot.data.dataset`.
"""

from ..data.dataset import (
    GraphLoader,
    check_structures,
    extract_labels,
    file_hash,
    graphs_from_structures,
    load_graphs,
    random_split,
    read_structures,
)

__all__ = [
    "GraphLoader",
    "check_structures",
    "extract_labels",
    "file_hash",
    "graphs_from_structures",
    "load_graphs",
    "random_split",
    "read_structures",
]

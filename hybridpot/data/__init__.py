"""Atomic graphs, neighbour lists and batching.

Reading labelled structure files into graphs (:mod:`.dataset`), the packed on-demand
format (:mod:`.packed`), per-rank batching (:mod:`.loader`) and the statistics the model
stores from a data set (:mod:`.statistics`) live here too, beside the graph code; import
them from their modules (``hybridpot.train`` re-exports their public names).
"""

from .graph import AtomicGraph, batch_graphs, graph_from_atoms, split_graph
from .neighbors import edge_vectors, neighbor_list

__all__ = [
    "AtomicGraph",
    "batch_graphs",
    "edge_vectors",
    "graph_from_atoms",
    "neighbor_list",
    "split_graph",
]

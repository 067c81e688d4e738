"""Atomic graphs, neighbour lists and batching."""

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

"""Species embedding: atomic numbers -> index in the model's element list -> learned scalars."""

from __future__ import annotations

import ase.data
import torch

MAX_ATOMIC_NUMBER = len(ase.data.chemical_symbols) - 1  # 118


def check_elements(elements) -> list[str]:
    """Validate a list of chemical symbols; return it as a list of str.

    Raises:
        TypeError: ``elements`` is not a list/tuple of str.
        ValueError: empty, unknown symbol, or duplicates.
    """
    if isinstance(elements, str) or not isinstance(elements, (list, tuple)):
        raise TypeError(
            f"elements must be a list of chemical symbols such as ['Na', 'Cl'], "
            f"got {type(elements).__name__} {elements!r}"
        )
    if len(elements) == 0:
        raise ValueError("elements must name at least one chemical symbol, got an empty list")
    for e in elements:
        if not isinstance(e, str) or e not in ase.data.atomic_numbers or e == "X":
            raise ValueError(f"elements: {e!r} is not a chemical symbol (expected e.g. 'H', 'Na')")
    if len(set(elements)) != len(elements):
        dupes = sorted({e for e in elements if list(elements).count(e) > 1})
        raise ValueError(f"elements must not repeat a symbol, got {dupes} more than once")
    return list(elements)


class SpeciesEmbedding(torch.nn.Module):
    """Atomic numbers -> species index (0 .. S-1) -> learned scalar features (N, num_features).

    Args:
        elements: the S chemical symbols the model knows, in the order of its species index.
        num_features: number of scalar (0e) features per atom.

    ``species_index(numbers)`` maps (N,) int64 atomic numbers to (N,) int64 indices and raises
    a ValueError naming any element that is not in ``elements``; ``forward(species)`` maps
    indices to (N, num_features) features of unit variance at initialisation.
    """

    def __init__(self, elements: list[str], num_features: int) -> None:
        super().__init__()
        self.elements = check_elements(elements)
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features must be an integer >= 1, got {num_features!r}")
        self.num_species = len(self.elements)
        self.num_features = num_features
        # Lookup table from atomic number to species index; -1 marks unknown elements.
        table = torch.full((MAX_ATOMIC_NUMBER + 1,), -1, dtype=torch.long)
        for k, symbol in enumerate(self.elements):
            table[ase.data.atomic_numbers[symbol]] = k
        self.register_buffer("index_table", table, persistent=False)
        self.weight = torch.nn.Parameter(torch.randn(self.num_species, num_features))

    def species_index(self, numbers: torch.Tensor, *, check: bool = True) -> torch.Tensor:
        """(N,) atomic numbers -> (N,) species indices; ValueError for unknown elements.

        ``check=False`` skips the value check (it reads values on the host), for numbers
        already checked (the model checks each graph once).
        """
        if numbers.dtype not in (torch.int64, torch.int32):
            raise TypeError(
                f"numbers must be an int64 tensor of atomic numbers, got {numbers.dtype}"
            )
        if torch.compiler.is_compiling() or not check:
            # The check below needs the values on the host; compiled inference skips it.
            return self.index_table[numbers.long()]
        numbers = numbers.long()
        bad_range = (numbers < 1) | (numbers > MAX_ATOMIC_NUMBER)
        if bool(bad_range.any()):
            raise ValueError(
                f"numbers must be atomic numbers in 1..{MAX_ATOMIC_NUMBER}, got "
                f"{sorted(set(numbers[bad_range].tolist()))}"
            )
        species = self.index_table[numbers]
        unknown = species < 0
        if bool(unknown.any()):
            zs = sorted(set(numbers[unknown].tolist()))
            symbols = [ase.data.chemical_symbols[z] for z in zs]
            raise ValueError(
                f"numbers contain elements {symbols} (Z={zs}) that the model does not know; "
                f"it was built for elements {self.elements}"
            )
        return species

    def forward(self, species: torch.Tensor) -> torch.Tensor:
        return self.weight[species]

    def extra_repr(self) -> str:
        return f"elements={self.elements}, num_features={self.num_features}"

"""hybridpot: hybrid machine-learned interatomic potentials.

An O(3)-equivariant message-passing network predicts a short-range energy and per-atom
charges; the Coulomb energy of those charges is computed exactly (Ewald / PME for
periodic cells, a slab correction for 2D-periodic cells, a direct sum for molecules).

Public API: :func:`build_model`, :func:`save_model`, :func:`load_model`,
:class:`HybridCalculator`, :func:`export_model` (a metatomic file that runs without
hybridpot), :class:`LammpsSession` (LAMMPS MD through ``fix external``), and
:func:`hybridpot.electrostatics.coulomb`.
"""

__version__ = "0.1.0"

__all__ = [
    "HybridCalculator",
    "LammpsSession",
    "build_model",
    "export_model",
    "load_model",
    "save_model",
]

_LAZY = {
    "build_model": ("hybridpot.model", "build_model"),
    "save_model": ("hybridpot.model", "save_model"),
    "load_model": ("hybridpot.model", "load_model"),
    "HybridCalculator": ("hybridpot.calculator", "HybridCalculator"),
    "export_model": ("hybridpot.model.export", "export_model"),
    "LammpsSession": ("hybridpot.lammps_driver", "LammpsSession"),
}


def __getattr__(name):
    # Imported on first use, so `import hybridpot` (and the CLI's start) stays fast.
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'hybridpot' has no attribute {name!r}")

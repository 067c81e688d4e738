"""Export a model to one self-contained TorchScript file in the metatomic format.

The file holds the network, the charge projection, the electrostatics with its parameter
choice, and the metadata (elements, cutoff, units, dtype, training provenance, licence
note); it loads with ``metatomic.torch.load_atomistic_model`` (or any engine that speaks
metatomic: ASE through ``metatomic_ase``, LAMMPS, i-PI, TorchSim, ...) without hybridpot.

The engine gives the model a full neighbour list at the network's cutoff (the network's
edges) and the total charge of each system (the standard ``"charge"`` input, read by
``metatomic_ase`` from ``atoms.info["charge"]``, 0 when absent); the model returns

- ``"energy"``: eV per system (or per atom), from which the engine takes forces and
  stress by autograd (positions and cell carry the gradient through the network's edge
  vectors and through the Coulomb sum, real space and mesh alike);
- ``"charge"``: per-atom charges, e (the standard metatomic quantity).

A model with ``induction`` exports its induction energy with its trained polarisabilities
(:mod:`hybridpot.electrostatics.scriptable_induction`); the induced dipoles themselves are
not an output (metatomic has no standard quantity for them).

The exported module (:class:`ExportedHybridModel`) runs the TorchScript twins of the
eager model (:class:`~hybridpot.nn.scriptable.ScriptableNetwork`,
:class:`~hybridpot.electrostatics.scriptable.ScriptableCoulomb`) on the same weights;
``tests/deploy`` checks it against :class:`~hybridpot.HybridCalculator` to 1e-8 in a
subprocess where ``import hybridpot`` fails.

``metatomic-torch`` is an optional dependency (the ``deploy`` extra).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile

import torch

from .. import keys
from ..fileio import atomic_write
from .hybrid import HybridModel
from .io import model_total_charge_key

#: Licence note stored in the metadata unless the caller gives one.
DEFAULT_LICENCE = (
    "hybridpot model; the weights carry the licence of the data and of the person who "
    "trained them (see the training provenance)"
)


def _metatomic():
    try:
        import metatomic.torch as mta
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "exporting needs metatomic-torch: pip install 'hybridpot[deploy]' "
            f"(or pip install metatomic-torch); import failed with: {error}"
        ) from None
    return mta


def export_model(
    model: HybridModel,
    path: str | os.PathLike | None = None,
    *,
    name: str = "hybridpot model",
    licence: str = DEFAULT_LICENCE,
    authors: list[str] | None = None,
):
    """Wrap ``model`` as a metatomic ``AtomisticModel`` and (if ``path``) save it.

    Args:
        model: a :class:`HybridModel` (float32 or float64; its dtype is the file's).
        path: destination file (conventionally ``*-deployed.pt``); written atomically.
            None: only return the wrapped model.
        name: model name in the metadata.
        licence: licence note stored in the metadata.
        authors: names for the metadata.

    Returns:
        The ``metatomic.torch.AtomisticModel``.

    Raises:
        ImportError: metatomic-torch is not installed (the ``deploy`` extra).
        TypeError: ``model`` is not a HybridModel.
        ValueError: the model cannot be exported (Ewald electrostatics, dipole readout,
            charge equilibration).
    """
    if not isinstance(model, HybridModel):
        raise TypeError(f"model must be a HybridModel, got {type(model).__name__}")
    if model.model_config.charge_model != "latent":
        raise ValueError(
            f"models with charge_model={model.model_config.charge_model!r} cannot be exported "
            "yet (the exported file has no charge-equilibration solve); export a latent-charge "
            "model"
        )
    mta = _metatomic()
    dtype = model.network.embedding.weight.dtype
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"only float32 and float64 models can be exported, got {dtype}")
    from .metatomic_module import ExportedHybridModel

    module = ExportedHybridModel(model).eval()
    config = model.model_config
    provenance = getattr(model, "metadata", None) or {}
    extra = {
        "hybridpot.config": json.dumps(model.config),
        "hybridpot.provenance": json.dumps(provenance),
        "hybridpot.units": "positions Å, energy eV, forces eV/Å, stress eV/Å³, charges e",
        # the atoms.info key the model was trained with; metatomic engines read the total
        # charge from their own standard input (metatomic_ase: atoms.info["charge"])
        "hybridpot.total_charge_key": model_total_charge_key(model),
        "licence": licence,
    }
    elements = list(config.elements)
    description = (
        f"hybridpot: equivariant short-range network + {_coulomb_text(config)} over "
        f"elements {elements}; network cutoff {config.cutoff} Å; outputs energy (eV) and "
        "per-atom charges (e); forces and stress by autograd in the engine"
    )
    metadata = mta.ModelMetadata(
        name=name, description=description, authors=list(authors or []), extra=extra
    )
    from ase.data import atomic_numbers

    capabilities = mta.ModelCapabilities(
        outputs={
            keys.ENERGY: mta.ModelOutput(unit="eV", sample_kind="system"),
            keys.METATOMIC_CHARGE: mta.ModelOutput(unit="e", sample_kind="atom"),
        },
        atomic_types=[atomic_numbers[e] for e in elements],
        # Long-range electrostatics: every atom depends on every other (metatomic's
        # convention for explicit long-range models).
        interaction_range=math.inf if config.coulomb else config.cutoff * config.num_layers,
        length_unit="angstrom",
        supported_devices=["cpu", "cuda"],
        dtype="float64" if dtype == torch.float64 else "float32",
    )
    wrapped = mta.AtomisticModel(module, metadata, capabilities)
    if path is not None:
        _atomic_export(wrapped, path)
    return wrapped


def _coulomb_text(config) -> str:
    if not config.coulomb:
        return "no electrostatics"
    return (
        f"Coulomb electrostatics ({config.coulomb_method}, sigma_q {config.sigma_q} Å, "
        f"accuracy {config.coulomb_accuracy:g}"
        + (", pairs inside the cutoff screened" if config.screened else "")
        + ")"
        + (" + induction of per-element polarisabilities" if config.induction else "")
    )


def _atomic_export(wrapped, path) -> None:
    """``wrapped.save(path)``, atomically: metatomic writes a scratch file, which
    :func:`hybridpot.fileio.atomic_write` then puts in place."""
    with tempfile.TemporaryDirectory() as scratch:
        scratch_file = os.path.join(scratch, "model.pt")
        wrapped.save(scratch_file)
        with open(scratch_file, "rb") as source:
            atomic_write(path, lambda handle: shutil.copyfileobj(source, handle))

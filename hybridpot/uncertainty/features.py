"""Last-layer features: the inputs of the readouts' final linear layers.

Both readouts end in a linear layer (e3nn ``FullyConnectedNet``: ``y = x @ W / sqrt(H)``
for H inputs), so each prediction is exactly linear in that layer's weights w:

    E_b = sum_{i in b} phi_i . w + shifts,   phi_i = scale (f_i - f_iso[Z_i]) / sqrt(H)
    q_i = psi_i . v                          (uniform projection, exactly; see below)

where f_i are the hidden activations before the last layer of the energy MLP, f_iso those
of the isolated atom of the same element (the readout subtracts its energy), ``scale`` the
energy scale (eV), and ``psi_i`` the derivative of the projected charge q_i with respect
to the weights v of the raw-charge output: the projection q_i = q~_i + w_i (Q - sum_j
q~_j) / sum_j w_j gives dq_i/dv = g_i - (w_i / sum_j w_j) sum_j g_j with g_i the hidden
charge activations / sqrt(H) (the projection weights w_i held fixed).

These derivatives are what the last-layer prediction rigidity (LLPR) needs: the Gaussian
posterior of the last-layer weights has covariance ~ (Phi^T Phi + s^2 I)^-1 over the
training features Phi, and a prediction's variance is phi^T (Phi^T Phi + s^2 I)^-1 phi.
"""

from __future__ import annotations

import torch

from ..data.segments import gather_segments, segment_sum


def last_layer_width(mlp: torch.nn.Sequential) -> int:
    """H: the number of inputs of ``mlp``'s last (linear) layer."""
    return int(list(mlp.children())[-1].h_in)


def hidden_activations(mlp: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """The input of ``mlp``'s last layer for inputs ``x`` (M, F_in): (M, H), scaled by the
    layer's normalisation (so that ``output = hidden @ last.weight``)."""
    layers = list(mlp.children())
    for layer in layers[:-1]:
        x = layer(x)
    last = layers[-1]
    # e3nn's linear output layer: x @ weight / sqrt(h_in * var_in / var_out)
    return x / (last.h_in * last.var_in / last.var_out) ** 0.5


def energy_features(network, scalars: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
    """Per-atom energy features phi_i (N, H) in eV: ``E_short_i = phi_i . w + shift[Z_i]``.

    Args:
        network: the :class:`hybridpot.nn.EquivariantNetwork`.
        scalars: (N + S, F) its ``keys.NODE_FEATURES`` (N atoms, then S isolated atoms).
        species: (N,) int64 species index of each atom.
    """
    readout = network.energy_readout
    n_atoms = species.shape[0]
    hidden = hidden_activations(readout.mlp, scalars)
    atoms, isolated = hidden[:n_atoms], hidden[n_atoms:]
    return readout.scale.to(hidden.dtype) * (atoms - isolated[species])


def charge_features(
    network, scalars: torch.Tensor, batch: torch.Tensor, num_graphs: int
) -> torch.Tensor:
    """Per-atom charge features psi_i (N, H) in e: the derivative of the projected charge
    q_i with respect to the raw-charge output weights (projection weights held fixed).

    Args:
        network: the :class:`hybridpot.nn.EquivariantNetwork` (with a charge readout).
        scalars: (N, F) the atoms' 0e features (isolated atoms removed).
        batch: (N,) structure index of each atom.
        num_graphs: B.
    """
    readout = network.charge_readout
    hidden = hidden_activations(readout.mlp, scalars)
    if readout.projection == "weighted":
        from ..nn.readout import W_MIN

        out = readout.mlp(scalars)
        weights = torch.nn.functional.softplus(out[:, 1]) + W_MIN
    else:
        weights = torch.ones_like(hidden[:, 0])
    sum_w = segment_sum(weights, batch, num_graphs).clamp_min(1e-300)
    sum_g = segment_sum(hidden, batch, num_graphs)
    return hidden - (weights / gather_segments(sum_w, batch))[:, None] * gather_segments(
        sum_g, batch
    )

"""Dense charge equilibration for small systems: the reference of the matrix-free solver.

The N x N Coulomb matrix is built column by column (or entry by entry from energies), then
the KKT system of the constrained minimum

    [ A   P ] [  q  ]   [ -chi ]
    [ P^T 0 ] [ -mu ] = [  Q   ],     A = diag(J + J_self) + C,

is solved directly with NumPy in float64. No iteration, no torch arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def matrix_from_potential(potential: Callable[[np.ndarray], np.ndarray], n: int) -> np.ndarray:
    """(N, N) eV/e² matrix C with C[:, j] = potential(e_j) (the potential of a unit charge
    on atom j), symmetrised; ``potential`` maps charges (N,) e to potentials (N,) eV/e
    (e.g. ``lambda q: ewald_sum(pos, q, cell, sigma_q=s)["potential"]``)."""
    columns = [np.asarray(potential(np.eye(n)[j]), dtype=np.float64) for j in range(n)]
    matrix = np.stack(columns, axis=1)
    return 0.5 * (matrix + matrix.T)


def matrix_from_energy(energy: Callable[[np.ndarray], float], n: int) -> np.ndarray:
    """(N, N) eV/e² matrix C of a quadratic energy E(q) = q^T C q / 2, by polarisation:
    C_ii = 2 E(e_i), C_ij = E(e_i + e_j) - E(e_i) - E(e_j)."""
    unit = np.eye(n)
    single = np.array([energy(unit[i]) for i in range(n)])
    matrix = np.diag(2.0 * single)
    for i in range(n):
        for j in range(i + 1, n):
            value = energy(unit[i] + unit[j]) - single[i] - single[j]
            matrix[i, j] = matrix[j, i] = value
    return matrix


def dense_qeq(
    electronegativity,
    hardness,
    coulomb_matrix: np.ndarray,
    group_index,
    group_charge,
) -> tuple[np.ndarray, np.ndarray]:
    """Charges (N,) e and chemical potentials mu (G,) eV/e of the constrained minimum of
    chi^T q + (1/2) q^T (diag(hardness) + C) q with sum_{i in g} q_i = Q_g.

    Args:
        electronegativity: (N,) eV/e.
        hardness: (N,) eV/e², everything on the diagonal that C lacks (J + J_self).
        coulomb_matrix: (N, N) eV/e².
        group_index: (N,) int group of each atom, 0..G-1.
        group_charge: (G,) e.
    """
    chi = np.asarray(electronegativity, dtype=np.float64)
    hard = np.asarray(hardness, dtype=np.float64)
    groups = np.asarray(group_index)
    charge = np.asarray(group_charge, dtype=np.float64)
    n, g = chi.shape[0], charge.shape[0]
    indicator = np.zeros((n, g))
    indicator[np.arange(n), groups] = 1.0
    kkt = np.zeros((n + g, n + g))
    kkt[:n, :n] = np.diag(hard) + np.asarray(coulomb_matrix, dtype=np.float64)
    kkt[:n, n:] = indicator
    kkt[n:, :n] = indicator.T
    solution = np.linalg.solve(kkt, np.concatenate([-chi, charge]))
    return solution[:n], -solution[n:]

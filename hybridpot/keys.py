"""Field names shared between packages, with their shapes and units.

These strings are the contract between the data, the network, the electrostatics, the
model, the trainer and the calculator. Use the constants, never the literals.

Shapes: N atoms in the (batched) graph, B structures, E directed edges.
"""

# --- graph fields ---------------------------------------------------------------------
POSITIONS = "positions"  # (N, 3) Å, float; need not be wrapped into the cell
NUMBERS = "numbers"  # (N,) int64 atomic numbers
CELL = "cell"  # (B, 3, 3) Å, rows are lattice vectors (zeros allowed when not periodic)
PBC = "pbc"  # (B, 3) bool, per-axis periodicity
TOTAL_CHARGE = "total_charge"  # (B,) e, from atoms.info["charge"], default 0
BATCH = "batch"  # (N,) int64, structure index of each atom
EDGE_INDEX = "edge_index"  # (2, E) int64, rows (i, j): edge i -> j
CELL_SHIFTS = "cell_shifts"  # (E, 3) float (integer-valued): r_ij = r_j - r_i + S_ij @ cell
FRAGMENT = "fragment"  # (N,) int64, global index of each atom's fragment (charge group)
FRAGMENT_CHARGE = "fragment_charge"  # (F,) e, total charge of each fragment
ELECTRIC_FIELD = "electric_field"  # (B, 3) V/Å, uniform external field (0 when absent)

# --- where ase.Atoms carry them ------------------------------------------------------
TOTAL_CHARGE_INFO = "charge"  # atoms.info key of the total charge (e) unless configured
FRAGMENT_ARRAY = "fragment"  # atoms.arrays key: (N,) int, fragment id 0..F-1 of each atom
FRAGMENT_CHARGES_INFO = "fragment_charges"  # atoms.info key: (F,) e, charge of each fragment
ELECTRIC_FIELD_INFO = "electric_field"  # atoms.info key: (3,) V/Å, uniform external field
BEC_ARRAY = "bec"  # atoms.arrays key of Born effective charges: (N, 9) e, Z_i[a, b] row-major

# --- model outputs (and reference labels of the same name) ------------------------------
ENERGY = "energy"  # (B,) eV, total energy per structure
ENERGIES = "energies"  # (N,) eV, per-atom energy (short-range + Coulomb share)
FORCES = "forces"  # (N, 3) eV/Å
STRESS = "stress"  # (B, 3, 3) eV/Å³, ASE sign: stress = (1/V) dE/dstrain
STRESS_VOIGT = "stress_voigt"  # (B, 6) eV/Å³, order xx yy zz yz xz xy
VIRIAL = "virial"  # (B, 3, 3) eV, virial = -dE/dstrain = -V * stress
CHARGES = "charges"  # (N,) e, per-atom charges summing to TOTAL_CHARGE
ENERGY_SHORT = "energy_short"  # (B,) eV, network (short-range) energy
ENERGIES_SHORT = "energies_short"  # (N,) eV, per-atom short-range (network) energy
ENERGY_COULOMB = "energy_coulomb"  # (B,) eV, electrostatic energy of CHARGES
ENERGY_FIELD = "energy_field"  # (B,) eV, -dipole·field (non-periodic, with a field), else 0
#: (N,) eV/e, dE_coulomb/dq_i (with ``induction`` plus dE_induction/dq_i, the potential of
#: the induced dipoles)
POTENTIAL = "electrostatic_potential"
DIPOLE = "dipole"  # (B, 3) e·Å, sum_i q_i r_i; only meaningful for non-periodic structures
POLARIZATION = "polarization"  # (B, 3) e/Å², sum_i q_i r_i / V of periodic structures (r as given)
BORN_EFFECTIVE_CHARGES = "born_effective_charges"  # (N, 3, 3) e, Z*_i[a, b] = dmu_a/dr_ib
ATOMIC_DIPOLES = "atomic_dipoles"  # (N, 3) e·Å, network output with predict_dipoles (l = 1 readout)
ELECTRONEGATIVITY = "electronegativity"  # (N,) eV/e, chi_i read out with charge_model "qeq"
HARDNESS = "hardness"  # (N,) eV/e², J_i > 0 read out with charge_model "qeq" (J_self not included)
#: (B,) eV, sum chi q + (1/2) sum (J + J_self) q² (charge_model "qeq"; 0 otherwise)
ENERGY_QEQ = "energy_qeq"
#: (B,) eV, -(k_e/2) sum alpha_i |e_i|² of the induced dipoles (``induction``; 0 otherwise)
ENERGY_INDUCTION = "energy_induction"
#: (N, 3) e·Å, alpha_i e_i: each atom's dipole induced by the charges (``induction`` only)
INDUCED_DIPOLES = "induced_dipoles"

# --- exported models (metatomic's standard quantity names; its energy output is ENERGY:
# (B, 1) eV per system or (N, 1) eV per atom) -------------------------------------------
METATOMIC_CHARGE = "charge"  # output: (N, 1) e per-atom charges; input: (B, 1) e total charge

NODE_FEATURES = "node_features"  # (N + S, F) 0e features the readouts read; S isolated atoms

# --- uncertainties (models with a fitted last-layer uncertainty, hybridpot.uncertainty) ---
ENERGY_UNCERTAINTY = "energy_uncertainty"  # (B,) eV, calibrated standard deviation of ENERGY
FORCES_UNCERTAINTY = "forces_uncertainty"  # (N,) eV/Å, calibrated std of each force component
CHARGES_UNCERTAINTY = "charges_uncertainty"  # (N,) e, calibrated std of each charge

# --- training labels (AtomicGraph.labels) besides the outputs above -------------------
WEIGHT = "weight"  # (B,) per-structure loss weight, >= 0 (1 when the file gives none)
MASK_SUFFIX = "_mask"  # labels[key + MASK_SUFFIX]: (B,) bool, which structures carry key

# --- physical constants -------------------------------------------------------------------
#: k_e = e^2 / (4 pi eps0) in eV·Å/e², CODATA 2018 (the value of torchpme.prefactors.eV_A;
#: tests/test_keys.py checks they agree, so this module needs no torch-pme import).
COULOMB_CONSTANT: float = 14.399645478425667

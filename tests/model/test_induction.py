"""First-order induction (model config ``induction: true``).

Checked against physics that does not share the code path: the ion-induced-dipole law
-alpha Q^2 k_e / (2 R^4) beyond the cutoff; an explicit pair sum of the screened field
for molecules; for periodic cells and slabs, the field as minus the finite-difference
derivative of the (screened) electrostatic potential at an atom's own position; forces,
stress and a force-loss gradient against finite differences; in an applied field, the
dipole as minus the field derivative of the energy and the polarisability sum alpha / k_e.
"""

import math

import ase
import numpy as np
import pytest
import torch

import hybridpot
from hybridpot import keys
from hybridpot.data import batch_graphs, graph_from_atoms
from hybridpot.electrostatics import Electrostatics
from hybridpot.electrostatics.induction import induction_field
from hybridpot.model.config import ModelConfig
from hybridpot.nn.radial import polynomial_envelope
from hybridpot.testing.finite_differences import numerical_forces, numerical_stress
from hybridpot.testing.structures import SMALL_CUTOFF as CUTOFF
from hybridpot.testing.structures import random_structure, small_model_config

DEGREE = 6  # polynomial envelope degree of the small model (its default)
ALPHA = {"Na": 0.3, "Cl": 1.7}  # Å³, set in the fixture (not the initial values)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(3)
    # Charges of order 1 e (not the latent default 0.1): a sizeable induction to check.
    m = hybridpot.build_model(small_model_config(induction=True, charge_init_scale=1.0))
    with torch.no_grad():
        target = torch.tensor([ALPHA[s] for s in m.model_config.elements], dtype=torch.float64)
        m.polarizability_raw.copy_(torch.log(torch.expm1(target)))
    return m


def ion_and_atom(distance: float, pbc=False) -> ase.Atoms:
    """Na fragment +1 and Cl fragment 0: one atom each, so the charges are exactly +1, 0."""
    atoms = ase.Atoms(
        "NaCl",
        positions=[[0.0, 0.0, 0.0], [distance * 0.8, distance * 0.6, 0.0]],
        cell=np.eye(3) * 30.0,
        pbc=pbc,
    )
    atoms.arrays["fragment"] = np.array([0, 1])
    atoms.info["fragment_charges"] = [1.0, 0.0]
    atoms.info["charge"] = 1.0
    return atoms


def gaussian_field(distance: float, sigma_q: float = 0.5) -> float:
    """Field (e/Å²) of a unit Gaussian charge (the small model's sigma_q) at ``distance``:
    -d/dR erf(a R) / R, a = 1 / (2 sigma_q); 1/R² up to the Gaussian's tail (1e-6
    relative at 4 Å)."""
    a = 1.0 / (2 * sigma_q)
    tail = 2 / math.sqrt(math.pi) * a * math.exp(-((a * distance) ** 2)) / distance
    return math.erf(a * distance) / distance**2 - tail


def _energy(model):
    def energy(atoms):
        out = model(graph_from_atoms(atoms, CUTOFF), compute_forces=False, compute_stress=False)
        return float(out[keys.ENERGY][0])

    return energy


def test_config_defaults_and_polarizability_values(model):
    # "auto" (the default) is off without training data (tests/train/test_induction_default.py)
    assert ModelConfig.from_dict({"elements": ["Na"], "cutoff": 3.0}).induction is False
    assert torch.allclose(
        model.polarizabilities(), torch.tensor([0.3, 1.7], dtype=torch.float64), atol=1e-12
    )
    plain = hybridpot.build_model(small_model_config())
    assert plain.polarizability_raw is None
    with pytest.raises(ValueError, match="induction: false"):
        plain.polarizabilities()


@pytest.mark.parametrize("distance", [4.0, 6.5, 9.0])
def test_ion_polarises_an_atom_by_the_inverse_fourth_power_law(model, distance):
    out = model(graph_from_atoms(ion_and_atom(distance), CUTOFF))
    assert out[keys.CHARGES].tolist() == pytest.approx([1.0, 0.0], abs=1e-12)
    field = gaussian_field(distance)
    assert field == pytest.approx(1 / distance**2, rel=2e-6)
    expected = -0.5 * keys.COULOMB_CONSTANT * ALPHA["Cl"] * field**2
    assert float(out[keys.ENERGY_INDUCTION][0]) == pytest.approx(expected, rel=1e-12)
    # The induced dipole points away from the cation: alpha e (e·Å).
    direction = np.array([0.8, 0.6, 0.0])
    induced = out[keys.INDUCED_DIPOLES].detach().numpy()
    np.testing.assert_allclose(induced[1], ALPHA["Cl"] * direction * field, atol=1e-14)
    np.testing.assert_allclose(induced[0], 0.0, atol=1e-15)  # a neutral atom has no field
    # The molecule's dipole includes it (charge dipole: the cation at the origin).
    np.testing.assert_allclose(out[keys.DIPOLE][0].detach().numpy(), induced[1], atol=1e-12)


def test_field_is_screened_inside_the_cutoff(model):
    """Inside r_c the field is (1 - u) times the unscreened one: the induction energy is
    weaker by (1 - u)², more so the closer the atoms, and vanishes at short range."""
    ratios = []
    for distance in (0.5, 1.5, 2.5, 3.4):
        out = model(graph_from_atoms(ion_and_atom(distance), CUTOFF))
        bare = -0.5 * keys.COULOMB_CONSTANT * ALPHA["Cl"] * gaussian_field(distance) ** 2
        ratios.append(float(out[keys.ENERGY_INDUCTION][0]) / bare)
    for distance, ratio in zip((0.5, 1.5, 2.5, 3.4), ratios):
        u = float(
            polynomial_envelope(torch.tensor([distance], dtype=torch.float64), CUTOFF, DEGREE)[0]
        )
        assert ratio == pytest.approx((1 - u) ** 2, rel=1e-9)
    assert ratios == sorted(ratios) and ratios[-1] < 1.0 and ratios[0] < 1e-7


def _envelope(ri: torch.Tensor, rj: torch.Tensor) -> float:
    return float(polynomial_envelope(torch.linalg.norm(ri - rj)[None], CUTOFF, DEGREE)[0])


def _bare_pair_field(ri: torch.Tensor, rj: torch.Tensor, qj, sigma_q: float) -> torch.Tensor:
    """j's field at i, written out independently: -grad_i [q_j erf(r / 2 sigma_q) / r]."""
    ri = ri.clone().requires_grad_(True)
    r = torch.linalg.norm(ri - rj)
    (grad,) = torch.autograd.grad(qj * torch.erf(r / (2 * sigma_q)) / r, ri)
    return -grad


def _field(es, graph, charges, cutoff: float) -> torch.Tensor:
    """induction_field of ``charges`` on ``graph``'s atoms with Coulomb module ``es``."""
    return induction_field(
        es,
        graph.coulomb_plan(es),
        graph.positions,
        graph.cell,
        graph.pbc,
        graph.batch,
        charges,
        graph.edge_index,
        graph.edge_vectors(),
        cutoff,
        DEGREE,
    )


def test_molecular_field_equals_an_explicit_pair_sum():
    torch.manual_seed(0)
    atoms = random_structure(11, n=7, pbc=(False,) * 3, scale=6.0)
    graph = graph_from_atoms(atoms, CUTOFF)
    sigma_q = 0.5
    es = Electrostatics(sigma_q=sigma_q, accuracy=1e-10)
    charges = torch.randn(len(atoms), dtype=torch.float64)
    field = _field(es, graph, charges, CUTOFF)
    positions = graph.positions
    reference = torch.zeros_like(positions)
    for i in range(len(atoms)):
        for j in range(len(atoms)):
            if i != j:
                bare = _bare_pair_field(positions[i], positions[j], charges[j], sigma_q)
                reference[i] += bare * (1 - _envelope(positions[i], positions[j]))
    torch.testing.assert_close(field, reference, rtol=1e-10, atol=1e-12)
    assert float(reference.abs().max()) > 1e-3  # atoms beyond the cutoff feel a field


@pytest.mark.parametrize("pbc", [(True, True, True), (True, True, False)], ids=["bulk", "slab"])
def test_periodic_field_is_minus_the_gradient_of_the_own_site_potential(pbc):
    """Unscreened (cutoff ~0), e_i = -d phi_i / d r_i with the sources held still: phi_i =
    dE/dq_i, differentiated by finite differences of atom i's position alone. Screened,
    the difference is the envelope-weighted field of the pairs inside the cutoff."""
    atoms = random_structure(12, n=6, pbc=pbc, scale=7.0)
    sigma_q = 0.5
    es = Electrostatics(sigma_q=sigma_q, accuracy=1e-10)
    torch.manual_seed(1)
    charges = torch.randn(len(atoms), dtype=torch.float64)
    charges -= charges.mean()  # slabs need a neutral cell

    def setup(a):
        graph = graph_from_atoms(a, CUTOFF)
        return graph, graph.coulomb_plan(es)

    def potential(a, i: int) -> float:
        graph, plan = setup(a)
        q = charges.clone().requires_grad_(True)
        energy = es(graph.positions, graph.cell, graph.pbc, q, graph.batch, plan=plan).sum()
        (phi,) = torch.autograd.grad(energy, q)
        return float(phi[i]) / keys.COULOMB_CONSTANT

    graph = setup(atoms)[0]

    full, screened = (_field(es, graph, charges, c).numpy() for c in (1e-9, CUTOFF))
    inside = np.zeros_like(full)
    origin = torch.zeros(3, dtype=torch.float64)
    for edge, (i, j) in enumerate(graph.edge_index.T.tolist()):
        other = graph.edge_vectors()[edge]  # atom j (or its image) seen from atom i
        bare = _bare_pair_field(origin, other, charges[j], sigma_q)
        inside[i] += (bare * _envelope(origin, other)).numpy()
    np.testing.assert_allclose(full - screened, inside, atol=1e-12)
    assert np.abs(inside).max() > 1e-2
    h = 1e-4
    for i in (0, 3):
        for k in range(3):
            moved = [atoms.copy(), atoms.copy()]
            moved[0].positions[i, k] += h
            moved[1].positions[i, k] -= h
            derivative = (potential(moved[0], i) - potential(moved[1], i)) / (2 * h)
            assert full[i, k] == pytest.approx(-derivative, abs=1e-7)


CASES = {
    "molecule": dict(seed=31, n=6, pbc=(False,) * 3, scale=6.0),
    "charged-bulk": dict(seed=32, n=6, pbc=(True,) * 3, scale=6.0, charge=1.0),
    "slab": dict(seed=33, n=6, pbc=(True, True, False), scale=6.0),
}


@pytest.mark.parametrize("name", list(CASES))
def test_forces_and_stress_match_finite_differences(model, name):
    atoms = random_structure(**CASES[name])
    periodic = all(atoms.pbc)
    out = model(graph_from_atoms(atoms, CUTOFF), compute_forces=True, compute_stress=periodic)
    assert abs(float(out[keys.ENERGY_INDUCTION][0])) > 1e-4  # the term is there
    forces = out[keys.FORCES].detach().numpy()
    np.testing.assert_allclose(forces, numerical_forces(_energy(model), atoms), atol=1e-7)
    if periodic:
        stress = out[keys.STRESS_VOIGT][0].detach().numpy()
        np.testing.assert_allclose(stress, numerical_stress(_energy(model), atoms), atol=1e-7)


def test_born_effective_charges_include_the_induced_dipoles(model):
    atoms = random_structure(34, n=5, pbc=(False,) * 3, scale=6.0)
    out = model(graph_from_atoms(atoms, CUTOFF), compute_forces=True, compute_bec=True)
    bec = out[keys.BORN_EFFECTIVE_CHARGES].detach().numpy()
    h = 1e-5
    for a, k in ((0, 0), (2, 1)):
        moved = [atoms.copy(), atoms.copy()]
        moved[0].positions[a, k] += h
        moved[1].positions[a, k] -= h
        dipoles = [
            model(graph_from_atoms(m, CUTOFF))[keys.DIPOLE][0].detach().numpy() for m in moved
        ]
        np.testing.assert_allclose(bec[a][:, k], (dipoles[0] - dipoles[1]) / (2 * h), atol=1e-7)


def test_batch_equals_one_by_one(model):
    structures = [random_structure(**case) for case in CASES.values()] + [ion_and_atom(7.0)]
    graphs = [graph_from_atoms(a, CUTOFF) for a in structures]
    batched = model(batch_graphs(graphs), compute_forces=True)
    forces = []
    for i, graph in enumerate(graphs):
        single = model(graph, compute_forces=True)
        assert float(batched[keys.ENERGY][i]) == pytest.approx(
            float(single[keys.ENERGY][0]), abs=1e-10
        )
        forces.append(single[keys.FORCES])
    torch.testing.assert_close(batched[keys.FORCES], torch.cat(forces), atol=1e-10, rtol=0)


def test_force_loss_gradient_matches_finite_differences(model):
    """Training on forces differentiates the field three times (energy, forces, loss)."""
    atoms = random_structure(**CASES["charged-bulk"])
    graph = graph_from_atoms(atoms, CUTOFF)
    alpha = model.polarizability_raw
    weight = next(p for n, p in model.named_parameters() if "charge_readout" in n)

    def loss() -> torch.Tensor:
        out = model(graph, compute_forces=True, create_graph=True)
        return (out[keys.FORCES] ** 2).sum()

    grads = torch.autograd.grad(loss(), [alpha, weight])
    h = 1e-6
    for parameter, grad, index in (
        (alpha, grads[0], (1,)),
        (weight, grads[1], (0,) * weight.dim()),
    ):
        values = []
        for step in (h, -2 * h, h):  # up, down, back
            with torch.no_grad():
                parameter[index] += step
            values.append(float(loss()))
        up, down = values[:2]
        assert float(grad[index]) == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-9)
        assert float(grad[index]) != 0.0


def test_energy_without_gradients(model):
    atoms = random_structure(**CASES["slab"])
    with torch.no_grad():
        out = model(graph_from_atoms(atoms, CUTOFF), compute_forces=False, compute_stress=False)
    energy = out[keys.ENERGY]
    assert not energy.requires_grad
    assert float(energy[0]) == pytest.approx(_energy(model)(atoms), abs=1e-12)


def test_bad_configurations_are_refused(model):
    with pytest.raises(ValueError, match="induction needs charges"):
        hybridpot.build_model(small_model_config(induction=True, coulomb=False))
    with pytest.raises(ValueError, match="induction needs charges"):
        hybridpot.build_model(small_model_config(induction=True, charge_model="qeq"))
    with pytest.raises(TypeError, match="induction must be true, false or .auto."):
        ModelConfig.from_dict({"elements": ["Na"], "cutoff": 3.0, "induction": "yes"})


FIELD = np.array([0.03, -0.05, 0.02])  # V/Å


def _in_field(atoms: ase.Atoms, field) -> ase.Atoms:
    out = atoms.copy()
    out.info["electric_field"] = np.asarray(field, dtype=float)
    return out


def test_applied_field_polarises_the_atoms(model):
    """Ion (+1) and neutral atom in a field E: each atom gets alpha E / k_e on top of the
    charges' induced dipole; the field energy is -M·E - (1/2) sum alpha |E|^2 / k_e."""
    k_e = keys.COULOMB_CONSTANT
    atoms = _in_field(ion_and_atom(6.0), FIELD)
    out = model(graph_from_atoms(atoms, CUTOFF))
    direction = np.array([0.8, 0.6, 0.0])
    from_charges = ALPHA["Cl"] * gaussian_field(6.0) * direction  # the ion polarises Cl
    induced = out[keys.INDUCED_DIPOLES].detach().numpy()
    np.testing.assert_allclose(induced[0], ALPHA["Na"] * FIELD / k_e, rtol=1e-12)
    np.testing.assert_allclose(induced[1], from_charges + ALPHA["Cl"] * FIELD / k_e, rtol=1e-12)
    # Na sits at the origin: the charges' dipole is 0, the molecule's is the induced one.
    np.testing.assert_allclose(out[keys.DIPOLE][0].detach().numpy(), induced.sum(0), rtol=1e-12)
    total_alpha = ALPHA["Na"] + ALPHA["Cl"]
    expected = -from_charges @ FIELD - 0.5 * total_alpha * (FIELD @ FIELD) / k_e
    assert float(out[keys.ENERGY_FIELD][0]) == pytest.approx(expected, rel=1e-12)
    # The charges' induction energy does not change with the field (first order).
    plain = model(graph_from_atoms(ion_and_atom(6.0), CUTOFF))
    assert float(out[keys.ENERGY_INDUCTION][0]) == float(plain[keys.ENERGY_INDUCTION][0])


def test_dipole_and_polarisability_are_field_derivatives_of_the_energy(model):
    """On a generic charged molecule: M = -dE/dE_field (central differences) and the
    polarisability -d2E/dE_field2 = sum_i alpha_i / k_e times the identity (latent charges
    do not respond to the field; the energy is quadratic in it, so differences are exact
    to rounding)."""
    atoms = random_structure(**CASES["molecule"])
    atoms.info["charge"] = 1.0

    def energy(field) -> float:
        out = model(graph_from_atoms(_in_field(atoms, field), CUTOFF), compute_forces=False)
        return float(out[keys.ENERGY][0])

    out = model(graph_from_atoms(_in_field(atoms, FIELD), CUTOFF), compute_forces=False)
    dipole = out[keys.DIPOLE][0].detach().numpy()
    species = [model.model_config.elements.index(s) for s in atoms.get_chemical_symbols()]
    total_alpha = float(model.polarizabilities()[species].sum())
    h = 0.05
    for axis in range(3):
        step = np.eye(3)[axis] * h
        up, mid, down = energy(FIELD + step), energy(FIELD), energy(FIELD - step)
        assert -(up - down) / (2 * h) == pytest.approx(dipole[axis], rel=1e-9, abs=1e-11)
        curvature = (up - 2 * mid + down) / h**2
        assert -curvature == pytest.approx(total_alpha / keys.COULOMB_CONSTANT, rel=1e-6)


@pytest.mark.parametrize("name", list(CASES))
def test_forces_in_an_applied_field(model, name):
    """Molecules: forces = -dE/dr by finite differences of the energy with the field.
    Periodic cells and slabs (no field energy): the field adds Z*ᵀE, Z* including the
    charges' induced dipoles, and no energy."""
    atoms = random_structure(**CASES[name])
    with_field = _in_field(atoms, FIELD)
    out = model(graph_from_atoms(with_field, CUTOFF), compute_forces=True, compute_stress=False)
    forces = out[keys.FORCES].detach().numpy()
    induced = out[keys.INDUCED_DIPOLES].detach().numpy()
    plain = model(
        graph_from_atoms(atoms, CUTOFF), compute_forces=True, compute_stress=False, compute_bec=True
    )
    species = [model.model_config.elements.index(s) for s in atoms.get_chemical_symbols()]
    alpha = model.polarizabilities()[species].detach().numpy()
    np.testing.assert_allclose(
        induced - plain[keys.INDUCED_DIPOLES].detach().numpy(),
        alpha[:, None] * FIELD / keys.COULOMB_CONSTANT,
        rtol=1e-12,
        atol=1e-16,
    )
    if not atoms.pbc.any():
        np.testing.assert_allclose(forces, numerical_forces(_energy(model), with_field), atol=1e-7)
        return
    assert float(out[keys.ENERGY_FIELD][0]) == 0.0
    bec = plain[keys.BORN_EFFECTIVE_CHARGES].detach().numpy()
    expected = plain[keys.FORCES].detach().numpy() + np.einsum("iab,a->ib", bec, FIELD)
    np.testing.assert_allclose(forces, expected, atol=1e-12)


def test_save_and_load_round_trip(model, tmp_path):
    path = tmp_path / "induction.pt"
    hybridpot.save_model(model, path)
    loaded = hybridpot.load_model(path)
    assert loaded.model_config.induction is True
    torch.testing.assert_close(loaded.polarizabilities(), model.polarizabilities())
    atoms = random_structure(**CASES["charged-bulk"])
    assert _energy(loaded)(atoms) == pytest.approx(_energy(model)(atoms), abs=1e-12)


def test_calculator_and_written_predictions_report_induction_energy_and_dipoles(model, tmp_path):
    import ase.io
    from ase.calculators.calculator import PropertyNotImplementedError

    from hybridpot.train.evaluate import predict, write_predictions

    atoms = ion_and_atom(6.0)
    atoms.calc = hybridpot.HybridCalculator(model=model)
    energy = atoms.get_potential_energy()
    parts = [
        atoms.calc.get_property(name, atoms)
        for name in ("energy_short", "energy_coulomb", "energy_field", "energy_qeq")
    ]
    induction = atoms.calc.get_property("energy_induction", atoms)
    expected = -0.5 * keys.COULOMB_CONSTANT * ALPHA["Cl"] * gaussian_field(6.0) ** 2
    assert induction == pytest.approx(expected, rel=1e-12)
    assert sum(parts) + induction == pytest.approx(energy, abs=1e-12)
    # The ion's field (along the unit vector Na -> Cl) polarises Cl; the neutral Cl's field
    # at Na is 0. The molecular dipole is the charges' (0: Na sits at the origin) plus it.
    direction = np.array([0.8, 0.6, 0.0])
    induced_cl = ALPHA["Cl"] * gaussian_field(6.0) * direction
    induced = atoms.calc.get_property("induced_dipoles", atoms)
    np.testing.assert_allclose(induced, [np.zeros(3), induced_cl], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(atoms.calc.get_property("dipole", atoms), induced_cl, rtol=1e-12)

    plain = ion_and_atom(6.0)
    predictions = predict(model, [graph_from_atoms(plain, CUTOFF)])
    path = tmp_path / "predicted.xyz"
    write_predictions([plain], predictions, path)
    written = ase.io.read(path)
    assert written.info["energy_induction"] == pytest.approx(expected, rel=1e-9)
    # extxyz keeps 8 decimals of per-atom arrays.
    np.testing.assert_allclose(written.arrays["induced_dipoles"], induced, atol=1e-8)

    # A model without induction has no induced dipoles to report.
    plain.calc = hybridpot.HybridCalculator(model=hybridpot.build_model(small_model_config()))
    with pytest.raises(PropertyNotImplementedError):
        plain.calc.get_property("induced_dipoles", plain)
    assert "induced_dipoles" not in predict(plain.calc.model, [graph_from_atoms(plain, CUTOFF)])[0]

"""Born effective charges as a training target and an evaluation output."""

import ase.io
import numpy as np
import pytest

import hybridpot
from hybridpot import keys
from hybridpot.train import ConfigError, Trainer, load_config
from hybridpot.train.evaluate import evaluate_structures, write_predictions
from hybridpot.train.synthetic import toy_nacl_clusters

TINY = [
    "model.cutoff=3.5",
    "model.num_layers=1",
    "model.hidden_irreps='8x0e + 8x1o'",
    "model.l_max=1",
    "model.num_radial=4",
    "model.radial_mlp=[8]",
]


def clusters_with_bec(count: int, seed: int):
    """Na2Cl2 clusters whose BEC labels are anisotropic: q_i (1 + 0.3 x̂x̂ᵀ), sum 0."""
    images = toy_nacl_clusters(count, pairs=2, seed=seed)
    for atoms in images:
        q = atoms.calc.results["charges"]
        z = q[:, None, None] * (np.eye(3) + 0.3 * np.diag([1.0, 0.0, 0.0]))
        atoms.arrays["bec"] = z.reshape(-1, 9)
    return images


def _config(tmp_path, data, *overrides):
    return load_config(
        None,
        [
            f"data.train={data}",
            f"output_dir={tmp_path / 'run'}",
            "quiet=true",
            "plots=false",
            "batch_size=4",
            "data.val_fraction=0.25",
            "dtype=float64",
            *TINY,
            *overrides,
        ],
    )


def test_training_on_bec_lowers_the_bec_error(tmp_path):
    path = tmp_path / "clusters.xyz"
    ase.io.write(path, clusters_with_bec(8, seed=4), format="extxyz")
    config = _config(tmp_path, path, "epochs=4", "loss.bec=10", "loss.forces=1",
                     "optim.lr=0.02")
    result = Trainer(config).fit()
    history = result.history
    assert all(np.isfinite(row["val_bec_mae"]) for row in history)
    assert history[-1]["train_bec_loss"] < history[0]["train_bec_loss"]
    model = hybridpot.load_model(tmp_path / "run" / "model.pt")
    images = ase.io.read(path, ":")
    metrics, counts, predictions = evaluate_structures(model, images)
    assert counts["bec"] == 9 * sum(len(a) for a in images)
    assert metrics["bec_mae"] > 0
    z = predictions[0][keys.BORN_EFFECTIVE_CHARGES]
    assert z.shape == (len(images[0]), 3, 3)
    np.testing.assert_allclose(z.sum(0), 0.0 * np.eye(3), atol=1e-10)  # sum rule, Q = 0
    out = tmp_path / "predicted.xyz"
    write_predictions(images, predictions, out)
    back = ase.io.read(out, 0)
    # extxyz keeps 8 decimals
    np.testing.assert_allclose(
        back.calc.results["born_effective_charges"].reshape(-1, 3, 3), z, atol=1e-7
    )
    np.testing.assert_allclose(
        back.arrays[f"ref_{keys.BORN_EFFECTIVE_CHARGES}"], images[0].arrays["bec"], atol=1e-7
    )


def test_bec_loss_without_bec_labels_is_an_error(tmp_path):
    path = tmp_path / "clusters.xyz"
    ase.io.write(path, toy_nacl_clusters(6, pairs=2, seed=1), format="extxyz")
    config = _config(tmp_path, path, "epochs=1", "loss.bec=1")
    with pytest.raises(ConfigError, match="loss.bec is 1 but no training structure has a bec"):
        Trainer(config).fit()


def test_bec_labels_of_the_wrong_shape_are_named(tmp_path):
    images = clusters_with_bec(3, seed=2)
    images[1].arrays["bec"] = images[1].arrays["bec"][:, :6]
    path = tmp_path / "bad.xyz"
    ase.io.write(path, images, format="extxyz")
    config = _config(tmp_path, path, "epochs=1", "loss.bec=1")
    with pytest.raises(ValueError, match=r"bad.xyz\[1\].*born_effective_charges.*'bec'"):
        Trainer(config).fit()

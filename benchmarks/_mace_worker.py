"""MACE side of benchmarks/inference.py; runs inside a virtual environment with mace-torch.

Builds a MACE model of the size quoted in the issue (64x0e + 64x1o hidden irreps, l_max 3,
correlation 3, 2 interactions, cutoff 5 Å, float32, random weights: speed does not depend
on the values), evaluates energy + forces + stress through MACE's own ASE calculator on the
given structure, and prints one JSON line with the median time and peak memory.
"""

import os

# e3nn 0.4.4 (pinned by mace-torch) loads its own bundled constants.pt with a plain
# torch.load, which torch >= 2.6 refuses by default. That file ships with e3nn itself, so
# allow it in this MACE-only worker process (hybridpot itself never does this).
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import ase.io  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from e3nn import o3  # noqa: E402
from mace import modules  # noqa: E402
from mace.calculators import MACECalculator  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("structure")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_default_dtype(torch.float32)  # MACE's own convention for float32 models
    atoms = ase.io.read(args.structure)
    torch.manual_seed(0)
    model = modules.ScaleShiftMACE(
        r_max=5.0,
        num_bessel=8,
        num_polynomial_cutoff=5,
        max_ell=3,
        interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        interaction_cls_first=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        num_interactions=2,
        num_elements=2,
        hidden_irreps=o3.Irreps("64x0e + 64x1o"),
        MLP_irreps=o3.Irreps("16x0e"),
        atomic_energies=np.zeros(2),
        avg_num_neighbors=26.0,
        atomic_numbers=[11, 17],
        correlation=3,
        gate=torch.nn.functional.silu,
        atomic_inter_scale=1.0,
        atomic_inter_shift=0.0,
    )
    calc = MACECalculator(models=model, device=args.device, default_dtype="float32")

    def call():
        atoms.calc = calc
        calc.results = {}
        t0 = time.perf_counter()
        calc.calculate(atoms, ["energy", "forces", "stress"])
        if args.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    call()
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = sorted(call() for _ in range(args.repeats))
    t = times[len(times) // 2]
    if args.device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    n = len(atoms)
    print(
        json.dumps(
            {
                "code": "mace",
                "model": "mace-64x0e+64x1o-L3-corr3",
                "dtype": "float32",
                "n_atoms": n,
                "device": args.device,
                "threads": args.threads,
                "parameters": sum(p.numel() for p in model.parameters()),
                "model_s": t,
                "total_s": t,
                "ms_per_atom": 1e3 * t / n,
                "atom_steps_per_s": n / t,
                "peak_memory_mib": peak,
                "peak_memory_kib_per_atom": 1024 * peak / n,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

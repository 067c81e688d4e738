"""The mesh (PME/P3M) potential at the atoms, with an analytic backward pass.

The reciprocal-space potential of a mesh method is a chain of linear maps,

    rho(n)   = sum_j q_j W_j(n)                     (charge assignment, W_j: p^3 weights)
    Psi      = K rho,  K x = irfft(G . rfft(x))      (convolution with the filter G(k))
    phi_i    = sum_n W_i(n) Psi(n)                  (back-interpolation, same weights)

with u_i = n_mesh * (r_i . cell^-1) the position of atom i in mesh steps along the three
lattice vectors and W_i(n) = w(u_ix - n_x) w(u_iy - n_y) w(u_iz - n_z) separable. K is a
convolution with a real, even kernel, so it is symmetric, and for any upstream gradient
g_i = dL/dphi_i (with rho_g the assignment of g and Psi_g = K rho_g):

    dL/dq_j   = sum_n W_j(n) Psi_g(n)
    dL/du_j   = g_j sum_n grad W_j(n) Psi(n) + q_j sum_n grad W_j(n) Psi_g(n)
    dL/dG(k)  = m(k) Re[rfft(rho)(k) conj(rfft(rho_g)(k))]   (m = 2 for the half-spectrum
                                                               columns that stand for +-k,
                                                               1 for k_z = 0 and Nyquist)

In an energy, L = sum_i c q_i phi_i (c a constant), g = c q: then Psi_g = c Psi and every
gradient comes from the forward pass's own mesh, with no further FFT: dL/dq = c phi,
dL/du_j = 2 c q_j grad phi_j, dL/dG = c m |rfft(rho)|^2. ``grad phi`` is contracted
separably from the p^3 mesh values gathered in the forward pass, instead of the generic
autograd through the p^3 outer products, the gather and two more FFTs (which cost about
as much as the forward pass, twice). Cell gradients (stress) flow through u (positions .
cell^-1) and through G (the filter depends on the cell) by ordinary autograd outside.

Several structures that share a mesh shape go through one batched mesh: each atom carries
the index ``slot`` of its structure, the mesh has a leading dimension G (one mesh per
structure), the FFTs are batched over it, and ``kfilter`` has one filter per structure.
When the caller knows that the upstream gradient is ``c_b q_i`` with one constant per
structure (an energy summed per structure, ``proportional_upstream=True``), c_b is the
least-squares ratio within each structure and no further FFT is needed; otherwise the
general formula is used. Neither path synchronises with the host.

When the backward pass itself must be differentiable (``create_graph=True``, training on
forces), the Function recomputes the same chain with differentiable torch operations
and differentiates that (exact second derivatives, at the cost of one more forward pass).
"""

from __future__ import annotations

import torch


def _nodes_and_offsets(scaled: torch.Tensor, nodes: int):
    """Nearest mesh point (float, no gradient) and the offset from it in mesh steps."""
    if nodes % 2 == 0:
        # Even p: nodes around the midpoint of the two nearest mesh points.
        nearest = torch.floor(scaled.detach())
        return nearest, scaled - (nearest + 0.5)
    # Odd p: nodes centred on the nearest mesh point.
    nearest = torch.round(scaled.detach())
    return nearest, scaled - nearest


def _flat_index(
    nearest: torch.Tensor, nodes: int, shape: tuple[int, int, int], slot: torch.Tensor
) -> torch.Tensor:
    """Flat indices (N, p, p, p) of each atom's p^3 nodes in the (G, nx, ny, nz) meshes
    (wrapping periodically inside the mesh of the atom's structure ``slot``)."""
    first = 1 - (nodes + 1) // 2
    steps = torch.arange(first, first + nodes, device=nearest.device)
    index = nearest.long()[:, :, None] + steps  # (N, 3, p)
    # Wrap per axis with Python ints (a tensor of the shape would be a host-to-device copy).
    ix, iy, iz = (index[:, a] % shape[a] for a in range(3))
    plane = (ix * shape[1])[:, :, None] + iy[:, None, :]  # (N, p, p)
    # The structure's mesh offset goes on the (N, p) plane before the broadcast to p^3.
    offset = slot * (shape[0] * shape[1] * shape[2])
    plane = plane * shape[2] + offset[:, None, None]
    return plane[:, :, :, None] + iz[:, None, None, :]


def _spread(values, wx, wy, wz, flat, shape, num_slots: int):
    """Assign (N,) values with separable weights (N, p) each: meshes (G, nx, ny, nz)."""
    weights = (values[:, None] * wx)[:, :, None, None] * wy[:, None, :, None]
    weights = weights * wz[:, None, None, :]
    size = num_slots * shape[0] * shape[1] * shape[2]
    mesh = torch.zeros(size, dtype=values.dtype, device=values.device)
    mesh = mesh.index_add(0, flat.reshape(-1), weights.reshape(-1))
    return mesh.reshape(num_slots, *shape)


def _convolve(rho: torch.Tensor, kfilter: torch.Tensor):
    """(rfft(rho), K rho) per mesh, torch-pme's normalisation (no 1/M in either direction).

    Args:
        rho: (G, nx, ny, nz); kfilter: (G, nx, ny, nz // 2 + 1).
    """
    dims = (-3, -2, -1)
    spectrum = torch.fft.rfftn(rho, dim=dims, norm="backward")
    psi = torch.fft.irfftn(spectrum * kfilter, s=rho.shape[-3:], dim=dims, norm="forward")
    return spectrum, psi


def _gather(mesh: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """Mesh values at each atom's nodes: (N, p, p, p)."""
    return mesh.reshape(-1).index_select(0, flat.reshape(-1)).reshape(flat.shape)


def _interpolate(values, wx, wy, wz, dwx=None, dwy=None, dwz=None):
    """sum_n W_i(n) values_i(n), and its gradient in mesh steps if the dw are given.

    Args:
        values: (N, p, p, p) mesh values at each atom's nodes.
        wx, wy, wz: (N, p) 1D weights; dwx, dwy, dwz: their derivatives.

    Returns:
        (N,) interpolated values and (N, 3) gradients (or None).
    """
    a = torch.einsum("nijk,nk->nij", values, wz)
    b = torch.einsum("nij,nj->ni", a, wy)
    phi = (b * wx).sum(1)
    if dwx is None:
        return phi, None
    gx = (b * dwx).sum(1)
    gy = (torch.einsum("nij,nj->ni", a, dwy) * wx).sum(1)
    gz = (torch.einsum("nij,nj->ni", torch.einsum("nijk,nk->nij", values, dwz), wy) * wx).sum(1)
    return phi, torch.stack([gx, gy, gz], dim=1)


def _half_spectrum_multiplicity(shape, dtype, device) -> torch.Tensor:
    """m(k_z): how many full-spectrum points each rfft column stands for (1 or 2)."""
    nz = shape[2]
    mult = torch.full((nz // 2 + 1,), 2.0, dtype=dtype, device=device)
    mult[0] = 1.0
    if nz % 2 == 0:
        mult[-1] = 1.0
    return mult


def _weights_and_derivatives(weight_fn, offsets: torch.Tensor):
    """1D weights (p, N, 3) and their derivatives d w / d offset (per mesh step).

    The weights are polynomials of the offset, evaluated elementwise, so the complex
    step w(x + i h) = w(x) + i h w'(x) + O(h^2) gives w' = Im w(x + i h) / h exactly to
    rounding (no difference of nearby numbers; h^2 underflows against the real part).
    """
    weights = weight_fn(offsets)
    step = 1e-20
    shifted = weight_fn(torch.complex(offsets, torch.full_like(offsets, step)))
    return weights, shifted.imag / step


def mesh_potential_autograd(
    scaled, charges, kfilter, weight_fn, nodes: int, shape, slot=None
) -> torch.Tensor:
    """The mesh potential phi (N,) with plain differentiable torch operations.

    Same arguments as :func:`mesh_potential`; used for double backward and as its test
    reference.
    """
    if kfilter.ndim == 3:
        kfilter = kfilter[None]
    if slot is None:
        slot = torch.zeros(scaled.shape[0], dtype=torch.int64, device=scaled.device)
    nearest, offsets = _nodes_and_offsets(scaled, nodes)
    w = weight_fn(offsets)  # (p, N, 3)
    wx, wy, wz = (w[:, :, a].T for a in range(3))
    flat = _flat_index(nearest, nodes, shape, slot)
    rho = _spread(charges, wx, wy, wz, flat, shape, kfilter.shape[0])
    _, psi = _convolve(rho, kfilter)
    phi, _ = _interpolate(_gather(psi, flat), wx, wy, wz)
    return phi


class _MeshPotential(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scaled, charges, kfilter, slot, weight_fn, nodes, shape, proportional):
        num_slots = kfilter.shape[0]
        nearest, offsets = _nodes_and_offsets(scaled, nodes)
        w, dw = _weights_and_derivatives(weight_fn, offsets)
        wx, wy, wz = (w[:, :, a].T.contiguous() for a in range(3))
        dwx, dwy, dwz = (dw[:, :, a].T.contiguous() for a in range(3))
        flat = _flat_index(nearest, nodes, shape, slot)
        rho = _spread(charges, wx, wy, wz, flat, shape, num_slots)
        spectrum, psi = _convolve(rho, kfilter)
        need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        if need_grad:
            phi, grad_phi = _interpolate(_gather(psi, flat), wx, wy, wz, dwx, dwy, dwz)
        else:
            phi, grad_phi = _interpolate(_gather(psi, flat), wx, wy, wz)
        ctx.save_for_backward(scaled, charges, kfilter, slot, phi, grad_phi, spectrum)
        ctx.mesh = (wx, wy, wz, dwx, dwy, dwz, flat)
        ctx.weight_fn, ctx.nodes, ctx.shape = weight_fn, nodes, shape
        ctx.proportional = proportional
        return phi

    @staticmethod
    def backward(ctx, grad):
        scaled, charges, kfilter, slot, phi, grad_phi, spectrum = ctx.saved_tensors
        needs = ctx.needs_input_grad[:3]
        none = (None,) * 5
        if torch.is_grad_enabled():
            # create_graph=True: differentiate a differentiable recomputation instead.
            inputs = [x for x, need in zip((scaled, charges, kfilter), needs) if need]
            with torch.enable_grad():
                phi_ad = mesh_potential_autograd(
                    scaled, charges, kfilter, ctx.weight_fn, ctx.nodes, ctx.shape, slot
                )
                grads = iter(torch.autograd.grad(phi_ad, inputs, grad, create_graph=True))
            return tuple(next(grads) if need else None for need in needs) + none

        wx, wy, wz, dwx, dwy, dwz, flat = ctx.mesh
        num_slots = kfilter.shape[0]
        proportional = ctx.proportional
        if proportional is not False:
            # g_i = c_b q_i (an energy sum_i q_i phi_i times a constant per structure):
            # every gradient scales the forward mesh's own, dL/dq = c phi and
            # dL/du = 2 c q grad phi. c_b is the ratio g/q at an atom of largest |q| in
            # the structure: one rounding (a sum over the structure would add N).
            abs_q = charges.abs()
            zeros = torch.zeros(num_slots, dtype=grad.dtype, device=grad.device)
            largest = zeros.scatter_reduce(0, slot, abs_q, "amax", include_self=False)
            at_largest = (abs_q == largest.index_select(0, slot)) & (abs_q > 0)
            safe_q = torch.where(at_largest, charges, 1.0)
            ratio = torch.where(at_largest, grad / safe_q, -torch.inf)
            scale_b = zeros.scatter_reduce(0, slot, ratio, "amax", include_self=False)
            scale_b = torch.where(largest > 0, scale_b, 0.0)
            scale = scale_b.index_select(0, slot)
            if proportional is None:
                # Not promised by the caller: check it (a host sync; the model promises
                # or declines, so its calls never get here). A few roundings of |g|.
                tolerance = 8 * torch.finfo(grad.dtype).eps * grad.abs().max()
                proportional = bool((grad - scale * charges).abs().max() <= tolerance)
        if proportional:
            grad_q = scale * phi if needs[1] else None
            grad_u = (2.0 * scale * charges)[:, None] * grad_phi if needs[0] else None
            spectrum_g = scale_b[:, None, None, None] * spectrum
        else:
            # General upstream gradient: one more assignment, convolution and gather.
            rho_g = _spread(grad, wx, wy, wz, flat, ctx.shape, num_slots)
            spectrum_g, psi_g = _convolve(rho_g, kfilter)
            phi_g, grad_phi_g = _interpolate(_gather(psi_g, flat), wx, wy, wz, dwx, dwy, dwz)
            grad_q = phi_g if needs[1] else None
            grad_u = grad[:, None] * grad_phi + charges[:, None] * grad_phi_g if needs[0] else None
        grad_kfilter = None
        if needs[2]:
            mult = _half_spectrum_multiplicity(ctx.shape, kfilter.dtype, kfilter.device)
            grad_kfilter = mult * (spectrum * spectrum_g.conj()).real
        return (grad_u, grad_q, grad_kfilter) + none


def mesh_potential(
    scaled: torch.Tensor,
    charges: torch.Tensor,
    kfilter: torch.Tensor,
    weight_fn,
    nodes: int,
    shape: tuple[int, int, int],
    slot: torch.Tensor | None = None,
    *,
    proportional_upstream: bool | None = None,
) -> torch.Tensor:
    """Mesh potential phi_i = sum_n W_i(n) (K rho)(n) at every atom, analytic backward.

    Args:
        scaled: (N, 3) positions in mesh steps along the lattice vectors,
            n_mesh * (r . cell^-1) (differentiable: carries the position and cell
            dependence).
        charges: (N,) e.
        kfilter: (G, nx, ny, nz // 2 + 1) real k-space filters G(k) on the rfft half
            spectrum, one per structure (differentiable: carries the cell dependence of
            the kernel); (nx, ny, nz // 2 + 1) for a single structure.
        weight_fn: maps offsets (N, 3) in mesh steps to 1D weights (p, N, 3)
            (torch-pme's ``_compute_1d_weights``, Lagrange or B-spline).
        nodes: p, interpolation nodes per axis.
        shape: (nx, ny, nz) mesh points.
        slot: (N,) int64 structure of each atom in [0, G) (None: all in structure 0).
        proportional_upstream: True promises that the gradient arriving at phi is
            c_b q_i with one constant per structure (phi only enters sum_i q_i phi_i per
            structure, differentiated once): the backward then needs no further FFT.
            False: the general backward. None: checked in the backward (a host sync).

    Returns:
        (N,) phi in (charge units) x (filter units), before torch-pme's division by the
        volume; differentiable w.r.t. ``scaled``, ``charges`` and ``kfilter`` (also
        twice: the backward pass of a ``create_graph`` call is differentiable).
    """
    if kfilter.ndim == 3:
        kfilter = kfilter[None]
    if slot is None:
        slot = torch.zeros(scaled.shape[0], dtype=torch.int64, device=scaled.device)
    return _MeshPotential.apply(
        scaled, charges, kfilter, slot, weight_fn, nodes, tuple(shape), proportional_upstream
    )

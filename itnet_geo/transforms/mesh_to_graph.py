"""Mesh to graph: edges, vertex areas as quadrature weights, normals, HKS."""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform
from torch_geometric.utils import to_undirected

from itnet_geo.transforms._batch import graph_index

# Below this many vertices a dense generalised eigensolve is cheaper and sturdier.
_DENSE_BELOW = 400


def _face_geometry(pos: np.ndarray, face: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unnormalised face normals (twice the area long) and face areas."""
    v0, v1, v2 = pos[face[:, 0]], pos[face[:, 1]], pos[face[:, 2]]
    cross = np.cross(v1 - v0, v2 - v0)
    area = 0.5 * np.linalg.norm(cross, axis=1)
    area = np.where(np.isfinite(area), area, 0.0)
    return cross, area


def vertex_areas(pos: np.ndarray, face: np.ndarray) -> np.ndarray:
    """Barycentric vertex areas: one third of the area of every adjacent face."""
    _, area = _face_geometry(pos, face)
    out = np.zeros(len(pos))
    np.add.at(out, face.reshape(-1), np.repeat(area / 3.0, 3))
    return out


def cotangent_laplacian(
    pos: np.ndarray, face: np.ndarray
) -> tuple[scipy.sparse.csr_matrix, np.ndarray]:
    r"""Cotangent stiffness matrix :math:`L` and lumped (barycentric) mass.

    :math:`L_{ij} = -\tfrac12(\cot\alpha_{ij} + \cot\beta_{ij})`,
    :math:`L_{ii} = -\sum_{j \ne i} L_{ij}`: the P1 finite-element stiffness
    matrix, symmetric positive semi-definite. Faces of (numerically) zero area
    are left out of both matrices, so degenerate triangles give no infinite
    cotangents.
    """
    num_nodes = len(pos)
    _, area = _face_geometry(pos, face)
    keep = area > 1e-12 * max(float(area.max(initial=0.0)), 1e-300)
    face = face[keep]
    cots, rows, cols = [], [], []
    for k in range(3):
        i, j, o = face[:, (k + 1) % 3], face[:, (k + 2) % 3], face[:, k]
        a, b = pos[i] - pos[o], pos[j] - pos[o]
        cot = np.einsum("fd,fd->f", a, b) / np.linalg.norm(np.cross(a, b), axis=1)
        cots.append(0.5 * cot)
        rows.append(i)
        cols.append(j)
    w = np.concatenate(cots)
    r, c = np.concatenate(rows), np.concatenate(cols)
    off = scipy.sparse.coo_matrix((w, (r, c)), shape=(num_nodes, num_nodes))
    off = (off + off.T).tocsr()
    diag = np.asarray(off.sum(axis=1)).ravel()
    lap = (scipy.sparse.diags(diag) - off).tocsr()
    mass = vertex_areas(pos, face)
    return lap, mass


def _dense_eigenpairs(
    lap: scipy.sparse.csr_matrix, mass: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """All pairs via the symmetric standard form ``M^-1/2 L M^-1/2``."""
    scale = 1.0 / np.sqrt(mass)
    sym = scale[:, None] * lap.toarray() * scale[None, :]
    lam, vec = np.linalg.eigh(0.5 * (sym + sym.T))
    return lam[:k], scale[:, None] * vec[:, :k]


def _eigenpairs(
    lap: scipy.sparse.csr_matrix, mass: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` smallest pairs of ``L phi = lam M phi`` (M-orthonormal phi)."""
    n = lap.shape[0]
    k = min(k, n)
    if n < _DENSE_BELOW or k >= n - 1:
        return _dense_eigenpairs(lap, mass, k)
    m = scipy.sparse.diags(mass).tocsc()
    # Shift-invert just below zero: L - sigma M is positive definite.
    sigma = -1e-8 * float(lap.diagonal().sum() / mass.sum())
    try:
        lam, phi = scipy.sparse.linalg.eigsh(
            lap.tocsc(), k=k, M=m, sigma=sigma, which="LM"
        )
    except (scipy.sparse.linalg.ArpackError, RuntimeError):
        if n > 5000:
            raise
        return _dense_eigenpairs(lap, mass, k)
    order = np.argsort(lam)
    return lam[order], phi[:, order]


def heat_kernel_signature(
    pos: np.ndarray, face: np.ndarray, num_times: int, num_eigs: int = 64
) -> np.ndarray:
    r"""Scale-invariant heat kernel signature at :obj:`num_times` time scales.

    .. math::
        \mathrm{HKS}(x, t) = A \,
        \frac{\sum_k e^{-\lambda_k t} \phi_k(x)^2}{\sum_k e^{-\lambda_k t}}

    with :math:`(\lambda_k, \phi_k)` the smallest eigenpairs of the cotangent
    Laplacian against the lumped mass (:math:`\phi_k` mass-orthonormal),
    :math:`A` the surface area, and :math:`t` log-spaced between
    :math:`4\ln 10 / \lambda_{\max}` and :math:`4\ln 10 / \lambda_{\min > 0}`
    (Sun et al., 2009). The constant eigenvector gives 1, so values are
    dimensionless and independent of the mesh's scale. Vertices on no face of
    positive area get 0.

    Returns:
        np.ndarray: :math:`(N, \text{num\_times})` in ``float64``.
    """
    num_nodes = len(pos)
    out = np.zeros((num_nodes, num_times))
    if num_times == 0 or len(face) == 0:
        return out
    pos = pos - pos.mean(axis=0)
    lap, mass = cotangent_laplacian(pos, face)
    active = np.flatnonzero(mass > 0)
    if len(active) == 0:
        return out
    sub_lap = lap[active][:, active]
    sub_mass = mass[active]
    lam, phi = _eigenpairs(sub_lap, sub_mass, min(num_eigs, len(active)))
    lam = np.clip(lam, 0.0, None)
    positive = lam[lam > 1e-8 * max(float(lam.max()), 1e-300)]
    if len(positive) == 0:
        times = np.ones(num_times)
    else:
        t_lo = 4 * math.log(10) / float(positive.max())
        t_hi = 4 * math.log(10) / float(positive.min())
        times = np.geomspace(t_lo, max(t_hi, t_lo), num_times)
    decay = np.exp(-np.outer(lam, times))  # (k, T)
    hks = (phi**2) @ decay / decay.sum(axis=0, keepdims=True)
    out[active] = hks * sub_mass.sum()
    return out


class MeshToGraph(BaseTransform):
    r"""Turn a triangle mesh into a graph with quadrature weights for ITConv.

    Sets

    - ``edge_index``: the undirected mesh edges, both directions, coalesced;
    - ``weight``: the barycentric vertex area :math:`w_i = \tfrac13 \sum_{f \ni i}
      |f|` — the quadrature weight of vertex :math:`i` for
      :math:`\int_S f \, dA \approx \sum_i w_i f(p_i)` (the weights sum to the
      surface area);
    - ``normal`` (when :obj:`normals`): unit vertex normals, the area-weighted
      mean of the adjacent face normals (zero for a vertex on no face);
    - ``x`` (when :obj:`hks` > 0): :obj:`hks` heat-kernel-signature features
      (see :func:`heat_kernel_signature`) from a shift-invert sparse eigensolve
      (:func:`scipy.sparse.linalg.eigsh`) of the cotangent Laplacian with lumped
      mass, or a dense one for small meshes; appended to an existing ``x``.

    Everything else (``pos``, ``y`` …) is kept; ``face`` too unless
    :obj:`remove_faces`. On a batch, edges and areas are computed at once and the
    eigensolve runs per graph.

    Args:
        hks (int, optional): Number of HKS time scales, 0 for none.
            (default: :obj:`0`)
        num_eigs (int, optional): Eigenpairs used for the HKS.
            (default: :obj:`64`)
        normals (bool, optional): Compute vertex normals. (default: :obj:`True`)
        remove_faces (bool, optional): Delete ``face`` afterwards.
            (default: :obj:`False`)

    Shapes:
        - **input:** ``pos`` :math:`(N, 3)`, ``face`` :math:`(3, F)`
        - **output:** ``edge_index`` :math:`(2, E)`, ``weight`` :math:`(N,)`,
          ``normal`` :math:`(N, 3)`, ``x`` :math:`(N, C + hks)`

    Example:
        >>> from torch_geometric.data import Data
        >>> pos = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]])
        >>> face = torch.tensor([[0, 1], [1, 3], [2, 2]])
        >>> data = MeshToGraph()(Data(pos=pos, face=face))
        >>> data.edge_index.size(1), float(data.weight.sum())
        (10, 1.0)
    """

    def __init__(
        self,
        hks: int = 0,
        num_eigs: int = 64,
        normals: bool = True,
        remove_faces: bool = False,
    ):
        if hks < 0:
            raise ValueError(f"hks must be non-negative, got {hks}")
        if num_eigs < 1:
            raise ValueError(f"num_eigs must be positive, got {num_eigs}")
        self.hks = hks
        self.num_eigs = num_eigs
        self.normals = normals
        self.remove_faces = remove_faces

    def forward(self, data: Data) -> Data:
        if data.pos is None or data.face is None:
            raise ValueError("MeshToGraph needs 'pos' and 'face'")
        pos, face = data.pos, data.face
        if face.dim() != 2 or face.size(0) != 3:
            raise ValueError(f"face must have shape (3, F), got {tuple(face.shape)}")
        num_nodes = pos.size(0)
        edge_index = torch.cat([face[:2], face[1:], face[[2, 0]]], dim=1)
        data.edge_index = to_undirected(edge_index, num_nodes=num_nodes)

        p = pos.detach().cpu().double().numpy()
        f = face.detach().cpu().t().numpy()
        cross, area = _face_geometry(p, f)
        weight = vertex_areas(p, f)
        data.weight = torch.from_numpy(weight).to(pos.device, pos.dtype)
        if self.normals:
            normal = np.zeros_like(p)
            for k in range(3):
                np.add.at(normal, f[:, k], np.where(area[:, None] > 0, cross, 0.0))
            length = np.linalg.norm(normal, axis=1, keepdims=True)
            normal = np.divide(
                normal, length, out=np.zeros_like(normal), where=length > 0
            )
            data.normal = torch.from_numpy(normal).to(pos.device, pos.dtype)
        if self.hks > 0:
            feats = self._hks(data, p, f)
            feats = torch.from_numpy(feats).to(pos.device, pos.dtype)
            x = data.x
            data.x = (
                feats if x is None else torch.cat([x.view(num_nodes, -1), feats], 1)
            )
        if self.remove_faces:
            del data.face
        return data

    def _hks(self, data: Data, p: np.ndarray, f: np.ndarray) -> np.ndarray:
        batch, num_graphs = graph_index(data)
        if batch is None:
            return heat_kernel_signature(p, f, self.hks, self.num_eigs)
        out = np.zeros((len(p), self.hks))
        b = batch.cpu().numpy()
        face_graph = b[f[:, 0]] if len(f) else np.zeros(0, dtype=np.int64)
        local = np.zeros(len(p), dtype=np.int64)
        for g in range(num_graphs):
            nodes = np.flatnonzero(b == g)
            local[nodes] = np.arange(len(nodes))
            faces = local[f[face_graph == g]]
            out[nodes] = heat_kernel_signature(p[nodes], faces, self.hks, self.num_eigs)
        return out

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(hks={self.hks}, num_eigs={self.num_eigs}, "
            f"normals={self.normals}, remove_faces={self.remove_faces})"
        )

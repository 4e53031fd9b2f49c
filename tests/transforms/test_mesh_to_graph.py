import numpy as np
import pytest
import torch
import trimesh
from torch_geometric.data import Batch, Data
from torch_geometric.utils import is_undirected

import itnet_geo.transforms.mesh_to_graph as mesh_to_graph_module
from itnet_geo.transforms import MeshToGraph, cotangent_laplacian, heat_kernel_signature

TETRA_POS = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
TETRA_FACE = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]).t()


def _mesh(m: trimesh.Trimesh, **attrs) -> Data:
    return Data(
        pos=torch.tensor(m.vertices, dtype=torch.float32),
        face=torch.tensor(m.faces, dtype=torch.long).t().contiguous(),
        **attrs,
    )


def test_edges_areas_normals_on_a_tetrahedron():
    data = Data(pos=TETRA_POS, face=TETRA_FACE, y=torch.tensor([1]))
    out = MeshToGraph()(data)
    assert out.edge_index.size(1) == 12 and is_undirected(out.edge_index)
    assert out.edge_index.unique(dim=1).size(1) == 12  # no duplicates
    assert not bool((out.edge_index[0] == out.edge_index[1]).any())
    area = 3 * 0.5 + 0.5 * 3**0.5
    torch.testing.assert_close(out.weight.sum(), torch.tensor(area))
    torch.testing.assert_close(
        out.weight[0], torch.tensor(0.5)
    )  # 3 right triangles / 3
    # vertex normals point away from the centroid
    outward = (out.normal * (TETRA_POS - TETRA_POS.mean(0))).sum(1)
    assert bool((outward > 0).all())
    torch.testing.assert_close(out.normal.norm(dim=1), torch.ones(4))
    assert out.y.tolist() == [1] and torch.equal(out.face, TETRA_FACE)
    assert "x" not in out


def test_areas_sum_to_the_mesh_area_and_normals_on_a_sphere():
    sphere = trimesh.creation.icosphere(subdivisions=2)
    out = MeshToGraph()(_mesh(sphere))
    torch.testing.assert_close(
        out.weight.sum().double(),
        torch.tensor(sphere.area, dtype=torch.float64),
        rtol=1e-5,
        atol=0,
    )
    radial = (out.normal * out.pos).sum(1) / out.pos.norm(dim=1)
    assert float(radial.min()) > 0.99
    assert out.edge_index.size(1) == 2 * len(sphere.edges_unique)


def test_hks_is_finite_symmetric_and_scale_invariant():
    sphere = trimesh.creation.icosphere(subdivisions=2)
    out = MeshToGraph(hks=8)(_mesh(sphere))
    assert out.x.shape == (162, 8) and torch.isfinite(out.x).all()
    # an icosphere is nearly homogeneous: the signature barely varies over it
    spread = out.x.std(0) / out.x.mean(0)
    assert float(spread.max()) < 0.1
    # mass-orthonormal eigenvectors: the area-weighted mean is 1 at every scale
    mean = (out.weight[:, None] * out.x).sum(0) / out.weight.sum()
    torch.testing.assert_close(mean, torch.ones(8), atol=1e-4, rtol=0)
    big = MeshToGraph(hks=8)(_mesh(sphere.copy().apply_scale(7.0)))
    torch.testing.assert_close(big.x, out.x, rtol=1e-3, atol=1e-4)


def test_hks_tells_a_tip_from_a_flat_region():
    cone = trimesh.creation.cone(radius=1.0, height=2.0, sections=24)
    cone = trimesh.Trimesh(
        *trimesh.remesh.subdivide_to_size(cone.vertices, cone.faces, 0.3)
    )
    out = MeshToGraph(hks=4)(_mesh(cone))
    apex = int(torch.argmax(out.pos[:, 2]))
    # heat stays longer at the tip: its short-time signature is the largest
    assert int(torch.argmax(out.x[:, 0])) == apex


def test_sparse_and_dense_eigensolves_agree(monkeypatch):
    sphere = trimesh.creation.icosphere(subdivisions=2)
    rng = np.random.default_rng(0)
    pos = sphere.vertices * rng.uniform(0.8, 1.2, size=3)
    dense = heat_kernel_signature(pos, sphere.faces, 6, num_eigs=20)
    monkeypatch.setattr(mesh_to_graph_module, "_DENSE_BELOW", 0)
    sparse = heat_kernel_signature(pos, sphere.faces, 6, num_eigs=20)
    np.testing.assert_allclose(sparse, dense, rtol=1e-5, atol=1e-8)


def test_cotangent_laplacian_is_symmetric_psd_with_constant_kernel():
    sphere = trimesh.creation.icosphere(subdivisions=1)
    lap, mass = cotangent_laplacian(sphere.vertices, sphere.faces)
    dense = lap.toarray()
    np.testing.assert_allclose(dense, dense.T, atol=1e-12)
    np.testing.assert_allclose(dense.sum(1), 0, atol=1e-10)
    assert np.linalg.eigvalsh(dense).min() > -1e-10
    np.testing.assert_allclose(mass.sum(), sphere.area)


def test_degenerate_and_tiny_meshes():
    # a zero-area face, a duplicated vertex and an isolated vertex
    pos = torch.tensor(
        [[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0], [5, 5, 5], [2, 0, 0]]
    )
    face = torch.tensor(
        [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3], [0, 4, 1], [0, 1, 6]]
    ).t()
    out = MeshToGraph(hks=5)(Data(pos=pos, face=face))
    assert torch.isfinite(out.x).all() and torch.isfinite(out.normal).all()
    mean = (out.weight[:, None] * out.x).sum(0) / out.weight.sum()
    torch.testing.assert_close(mean, torch.ones(5), atol=1e-4, rtol=0)
    assert float(out.weight[5]) == 0 and torch.equal(out.x[5], torch.zeros(5))
    assert torch.equal(out.normal[5], torch.zeros(3))
    single = MeshToGraph(hks=3)(Data(pos=TETRA_POS[:3], face=TETRA_FACE[:, :1]))
    assert single.x.shape == (3, 3) and torch.isfinite(single.x).all()
    assert bool((single.x > 0).all())


def test_batch_matches_single_graphs_and_x_is_appended():
    a = _mesh(trimesh.creation.icosphere(subdivisions=1), x=torch.ones(42, 2))
    b = _mesh(trimesh.creation.box(), x=torch.zeros(8, 2))
    transform = MeshToGraph(hks=4)
    out = transform(Batch.from_data_list([a, b]))
    single = [transform(d) for d in (a, b)]
    torch.testing.assert_close(out.x, torch.cat([s.x for s in single]))
    torch.testing.assert_close(out.weight, torch.cat([s.weight for s in single]))
    assert out.x.shape == (50, 6) and torch.equal(out.x[:, :2], torch.cat([a.x, b.x]))
    assert out.edge_index.size(1) == sum(s.edge_index.size(1) for s in single)


def test_options_repr_and_errors():
    out = MeshToGraph(normals=False, remove_faces=True)(
        Data(pos=TETRA_POS, face=TETRA_FACE)
    )
    assert "face" not in out and "normal" not in out
    assert (
        repr(MeshToGraph(hks=16))
        == "MeshToGraph(hks=16, num_eigs=64, normals=True, remove_faces=False)"
    )
    with pytest.raises(ValueError, match="face"):
        MeshToGraph()(Data(pos=TETRA_POS))
    with pytest.raises(ValueError):
        MeshToGraph(hks=-1)

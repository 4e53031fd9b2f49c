import pytest
import torch
from torch_geometric.data import Batch, Data

from itnet_geo.transforms import SamplePoints, sample_surface

# two triangles in the plane z = 0 with areas 1/2 (x < 1) and 3/2 (x > 1)
POS = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0], [4, 0, 0], [1, 1, 0]])
FACE = torch.tensor([[0, 3], [1, 4], [2, 5]])


def test_sample_surface_is_area_weighted():
    g = torch.Generator().manual_seed(0)
    n = 20000
    points, normals = sample_surface(POS, FACE, n, g)
    in_big = (points[:, 0] > 1).float().mean()
    # expected 3/4; binomial standard deviation ~ 0.003
    assert abs(float(in_big) - 0.75) < 0.015
    # uniform inside the face: the centroid of the big triangle's samples
    big = points[points[:, 0] > 1]
    torch.testing.assert_close(big.mean(0), POS[3:].mean(0), atol=0.03, rtol=0)
    assert points[:, 2].abs().max() == 0
    torch.testing.assert_close(normals, torch.tensor([[0.0, 0, 1]]).expand(n, 3))


def test_sample_surface_stays_inside_faces():
    g = torch.Generator().manual_seed(1)
    points, _ = sample_surface(POS[:3], FACE[:, :1], 500, g)
    assert bool((points[:, :2] >= 0).all()) and bool((points[:, :2].sum(1) <= 1).all())


def test_sample_surface_large_coordinates_float64():
    g = torch.Generator().manual_seed(0)
    pos = POS.double() * 1e5 + 3e5
    points, normals = sample_surface(pos, FACE, 100, g)
    assert points.dtype == torch.float64 and torch.isfinite(points).all()
    torch.testing.assert_close(
        normals.norm(dim=1), torch.ones(100, dtype=torch.float64)
    )


def test_sample_surface_degenerate_mesh_raises():
    flat = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="positive area"):
        sample_surface(flat, torch.tensor([[0], [1], [2]]), 10)
    with pytest.raises(ValueError, match="positive area"):
        sample_surface(POS, torch.zeros(3, 0, dtype=torch.long), 10)


def test_sample_points_transform_keeps_other_attributes():
    data = Data(pos=POS, face=FACE, y=torch.tensor([3]))
    out = SamplePoints(64, seed=0)(data)
    assert out.pos.shape == (64, 3) and out.normal.shape == (64, 3)
    assert "face" not in out and out.y.tolist() == [3]
    assert "face" in data  # the input is not modified
    again = SamplePoints(64, seed=0)(data)
    torch.testing.assert_close(out.pos, again.pos)
    other = SamplePoints(64, seed=1)(data)
    assert not torch.equal(out.pos, other.pos)


def test_sample_points_without_normals_drops_stale_vertex_normals():
    data = Data(pos=POS, face=FACE, normal=torch.zeros(6, 3))
    out = SamplePoints(8, include_normals=False)(data)
    assert "normal" not in out and out.pos.shape == (8, 3)


def test_sample_points_on_a_batch():
    a = Data(pos=POS[:3], face=FACE[:, :1])
    b = Data(pos=POS[:3] + 10, face=FACE[:, :1])
    batch = Batch.from_data_list([a, b])
    out = SamplePoints(32, seed=0)(batch)
    assert out.pos.shape == (64, 3)
    assert out.batch.tolist() == [0] * 32 + [1] * 32
    assert out.ptr.tolist() == [0, 32, 64]
    assert bool((out.pos[:32] < 2).all()) and bool((out.pos[32:] >= 10).all())


def test_sample_points_repr_and_errors():
    assert repr(SamplePoints(16)) == "SamplePoints(16, include_normals=True, seed=None)"
    with pytest.raises(ValueError, match="face"):
        SamplePoints(4)(Data(pos=POS))
    with pytest.raises(ValueError, match="positive"):
        SamplePoints(0)

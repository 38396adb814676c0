"""IRN relation geometry (PathIndex), path-max affinities, transition matrices and the random walk."""
import math

import pytest
import torch

from advcam.indexing import (
    PathIndex,
    affinity_sparse2dense,
    edge_to_affinity,
    propagate_to_edge,
    propagate_to_edge_dense,
    search_paths,
    to_transition_matrix,
)


@pytest.mark.parametrize("radius,count", [(10, 152), (5, 34)])
def test_direction_counts_and_half_plane(radius, count):
    pi = PathIndex(radius, default_size=(2 * radius, 2 * radius + 2))
    dirs = [tuple(d) for d in pi.search_dst.tolist()]
    assert pi.n_directions == len(dirs) == count == len(set(dirs))
    assert pi.radius_floor == radius - 1
    for y, x in dirs:
        assert y * y + x * x < radius * radius
        assert y > 0 or (y == 0 and x > 0)  # half-plane: each unordered pair once
        assert (-y, -x) not in dirs
    assert pi.to_displacement().shape == (count, 2)
    assert torch.equal(pi.to_displacement(), pi.search_dst.float())


@pytest.mark.parametrize("radius", [5, 10])
def test_paths_geometry(radius):
    groups = search_paths(radius)
    lengths = [len(g[0]) for g in groups]
    assert lengths == sorted(set(lengths))  # grouped by length, ascending
    dst_order = [p[0] for g in groups for p in g]
    assert dst_order == [tuple(d) for d in PathIndex(radius, (2 * radius, 2 * radius + 2)).search_dst.tolist()]
    for g in groups:
        for p in g:
            assert len(p) == len(g[0]) == len(set(p))
            (dy, dx), last = p[0], p[-1]
            assert last == (0, 0)
            l1 = [abs(y) + abs(x) for y, x in p]
            assert l1 == sorted(l1, reverse=True) and l1[0] > l1[1] and l1[-2] > l1[-1]
            for y, x in p:
                assert min(0, dy) <= y <= max(0, dy) and min(0, dx) <= x <= max(0, dx)
                assert (dy * x - dx * y) ** 2 / (dy * dy + dx * dx) < 1  # close to the segment
            # the point set is 4-connected, so no path can slip through a 4-connected wall
            pts, seen, stack = set(p), {p[0]}, [p[0]]
            while stack:
                y, x = stack.pop()
                for q in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                    if q in pts and q not in seen:
                        seen.add(q)
                        stack.append(q)
            assert seen == pts
    # straight paths are the full segments
    flat = {p[0]: p for g in groups for p in g}
    assert flat[(0, 3)] == [(0, 3), (0, 2), (0, 1), (0, 0)]
    assert flat[(2, 2)][0] == (2, 2) and (1, 1) in flat[(2, 2)]


@pytest.mark.parametrize("size", [(9, 9), (12, 15), (20, 11)])
def test_path_indices_inside_grid_and_consistent(size):
    pi = PathIndex(3, default_size=size)
    h, w = size
    rf = pi.radius_floor
    src, dst = pi.get_src_dst(size)
    assert src.numel() == (h - rf) * (w - 2 * rf)
    assert dst.shape == (pi.n_directions, src.numel())
    assert torch.equal(src.view(h - rf, w - 2 * rf)[0, :3], torch.tensor([rf, rf + 1, rf + 2]))
    ys, xs = src // w, src % w
    k = 0
    for group, paths in zip(pi.search_paths, pi.path_indices, strict=True):
        assert paths.dtype == torch.long and paths.shape == (len(group), len(group[0]), src.numel())
        assert paths.min() >= 0 and paths.max() < h * w
        assert torch.equal(paths[:, -1], src.expand(len(group), -1))
        for p, ind in zip(group, paths, strict=True):
            assert torch.equal(ind[0], dst[k])
            k += 1
            for (y, x), row in zip(p, ind, strict=True):
                # index = pixel (src_y + y, src_x + x), without wrapping around a row
                assert torch.equal(row // w, ys + y) and torch.equal(row % w, xs + x)
    assert k == pi.n_directions
    other = pi.get_path_indices((h + 3, w + 1))
    assert all(int(p.max()) < (h + 3) * (w + 1) for p in other)


def test_training_grid_source_count():
    pi = PathIndex(10, default_size=(24, 24))
    src, dst = pi.get_src_dst((128, 128))
    assert src.numel() == 119 * 110 == 13090
    assert dst.shape == (152, 13090) and int(dst.max()) < 128 * 128


def test_edge_to_affinity_vertical_wall():
    h, w, wall = 10, 14, 6
    pi = PathIndex(4, default_size=(h, w))
    edge = torch.zeros(1, 1, h, w)
    edge[..., wall] = 1.0
    aff = edge_to_affinity(edge, pi.path_indices)[0]
    src, dst = pi.get_src_dst((h, w))
    cs, cd = (src % w).expand_as(dst), dst % w
    blocked = (cs == wall) | (cd == wall) | ((cs < wall) != (cd < wall))
    assert aff.shape == dst.shape
    assert torch.all(aff[blocked] == 0) and torch.all(aff[~blocked] == 1)
    assert blocked.any() and (~blocked).any()
    # graded edges: affinity = 1 - max along the path
    e = torch.zeros(1, 1, h, w)
    e[0, 0, 2, 5], e[0, 0, 2, 6] = 0.25, 0.75
    a = edge_to_affinity(e, pi.path_indices)[0]
    d = pi.search_dst.tolist().index([0, 1])
    s = ((src // w == 2) & (src % w == 5)).nonzero().item()
    assert a[d, s] == pytest.approx(0.25)  # pair (2,5)-(2,6): 1 - max(0.25, 0.75)


def test_affinity_sparse2dense():
    aff = torch.tensor([[0.5, 0.25], [0.125, 1.0]])
    ind_from = torch.tensor([0, 1])
    ind_to = torch.tensor([[1, 2], [3, 3]])
    dense = affinity_sparse2dense(aff, ind_from, ind_to, 4)
    expected = torch.tensor([[1, 0.5, 0, 0.125],
                             [0.5, 1, 0.25, 1.0],
                             [0, 0.25, 1, 0],
                             [0.125, 1.0, 0, 1]])
    assert torch.equal(dense, expected)


def test_transition_matrix_by_hand():
    a = torch.tensor([[1, 0.5, 0], [0.5, 1, 0.5], [0, 0.5, 1]], dtype=torch.float64)
    # beta = 2: A**2 = [[1, 1/4, 0], [1/4, 1, 1/4], [0, 1/4, 1]], column sums 5/4, 3/2, 5/4
    # T = [[4/5, 1/6, 0], [1/5, 2/3, 1/5], [0, 1/6, 4/5]]
    t1 = torch.tensor([[4 / 5, 1 / 6, 0], [1 / 5, 2 / 3, 1 / 5], [0, 1 / 6, 4 / 5]], dtype=torch.float64)
    assert torch.allclose(to_transition_matrix(a, beta=2, times=0), t1)
    # times = 1: T @ T, e.g. [0,0] = 16/25 + 1/30 = 101/150, [0,1] = 2/15 + 1/9 = 11/45,
    # [1,0] = 4/25 + 2/15 = 44/150, [2,0] = 1/30, [1,1] = 1/30 + 4/9 + 1/30 = 23/45
    t2 = to_transition_matrix(a, beta=2, times=1)
    assert t2[0, 0].item() == pytest.approx(101 / 150)
    assert t2[0, 1].item() == pytest.approx(11 / 45)
    assert t2[1, 0].item() == pytest.approx(44 / 150)
    assert t2[2, 0].item() == pytest.approx(1 / 30)
    assert t2[1, 1].item() == pytest.approx(23 / 45)
    assert torch.allclose(t2.sum(0), torch.ones(3, dtype=torch.float64))  # column-stochastic


@pytest.mark.parametrize("fn", [propagate_to_edge, propagate_to_edge_dense])
def test_random_walk_two_pixels_by_hand(fn):
    # 1x2 grid, edge [0.5, 0]: the only pair (0,0)-(0,1) has affinity 1 - max(0.5, 0) = 1/2.
    # beta = 1: W = [[1, 1/2], [1/2, 1]], column sums 3/2 -> T = [[2/3, 1/3], [1/3, 2/3]],
    # T^2 = [[5/9, 4/9], [4/9, 5/9]]. x = [1, 1] * (1 - edge) = [1/2, 1];
    # x @ T^2 = [1/2 * 5/9 + 4/9, 1/2 * 4/9 + 5/9] = [13/18, 7/9].
    x = torch.ones(1, 1, 2, dtype=torch.float64)
    edge = torch.tensor([[0.5, 0.0]], dtype=torch.float64)
    out = fn(x, edge, radius=5, beta=1, exp_times=1)
    assert out.shape == x.shape
    assert torch.allclose(out, torch.tensor([[[13 / 18, 7 / 9]]], dtype=torch.float64))
    # beta = 10: a**beta = 2**-10, eigenvalue of T below 1 is (1 - 2**-10) / (1 + 2**-10) = lam;
    # T^n = [[1 + lam^n, 1 - lam^n], [1 - lam^n, 1 + lam^n]] / 2, n = 2**8
    lam = (1 - 2**-10) / (1 + 2**-10)
    ln = lam ** 256
    expected = torch.tensor([[[0.5 * (1 + ln) / 2 + (1 - ln) / 2, 0.5 * (1 - ln) / 2 + (1 + ln) / 2]]],
                            dtype=torch.float64)
    assert torch.allclose(fn(x, edge), expected)


@pytest.mark.parametrize("exp_times", [0, 1, 3, 8])
def test_sparse_walk_equals_dense(exp_times):
    g = torch.Generator().manual_seed(exp_times)
    x = torch.rand(3, 12, 15, generator=g, dtype=torch.float64)
    edge = torch.rand(1, 1, 12, 15, generator=g, dtype=torch.float64) ** 3
    dense = propagate_to_edge_dense(x, edge, exp_times=exp_times)
    sparse = propagate_to_edge(x, edge, exp_times=exp_times)
    assert sparse.shape == dense.shape == x.shape
    assert (sparse - dense).abs().max() <= 1e-10 * dense.abs().max()
    # float32: both accumulate rounding differently over T^(2^k); they agree to ~1e-4 relative
    d32 = propagate_to_edge_dense(x.float(), edge.float(), exp_times=exp_times)
    s32 = propagate_to_edge(x.float(), edge.float(), exp_times=exp_times)
    assert s32.dtype == torch.float32
    assert (s32.double() - dense).abs().max() <= 5e-4 * dense.abs().max()
    assert (d32.double() - dense).abs().max() <= 5e-4 * dense.abs().max()


def test_sparse_walk_other_radius_and_shapes():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 1, 7, 9, generator=g, dtype=torch.float64)
    edge = torch.rand(7, 9, generator=g, dtype=torch.float64)
    for radius in (2, 3):
        a = propagate_to_edge_dense(x, edge, radius=radius, beta=4, exp_times=3)
        b = propagate_to_edge(x, edge.view(1, 7, 9), radius=radius, beta=4, exp_times=3)
        assert b.shape == x.shape and torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="does not match"):
        propagate_to_edge(x, edge[:6])


def test_walk_without_edges_spreads_and_averages():
    h, w = 9, 11
    edge = torch.zeros(h, w, dtype=torch.float64)
    # T is column-stochastic, so x @ T is a weighted average: constants are fixed points
    ones = torch.ones(1, h, w, dtype=torch.float64)
    assert torch.allclose(propagate_to_edge(ones, edge, exp_times=4), ones)
    delta = torch.zeros(1, h, w, dtype=torch.float64)
    delta[0, 4, 5] = 1.0
    out = propagate_to_edge(delta, edge, exp_times=4)
    assert (out > 1e-6).sum() > 50  # mass has spread well beyond the radius
    assert out.max() < 0.2 and out.min() >= 0
    assert torch.allclose(out, out.flip(-1).flip(-2))  # symmetric around the centre pixel
    x = torch.rand(2, h, w, dtype=torch.float64)
    y = propagate_to_edge(x, edge, exp_times=2)
    assert torch.all(y <= x.amax((1, 2), keepdim=True) + 1e-12)
    assert torch.all(y >= x.amin((1, 2), keepdim=True) - 1e-12)


def test_walk_does_not_cross_a_wall():
    h, w, wall = 8, 13, 6
    edge = torch.zeros(h, w)
    edge[:, wall] = 1.0
    x = torch.zeros(1, h, w)
    x[0, :, :wall] = torch.rand(h, wall)
    out = propagate_to_edge(x, edge)
    assert torch.all(out[0, :, wall:] == 0) and out[0, :, :wall].sum() > 0
    assert math.isclose(float(out[0, :, :wall].std()), 0.0, abs_tol=1e-3)  # mixed within its region


def test_pair_displacement_of_a_centroid_field_matches_targets():
    h, w = 12, 14
    pi = PathIndex(4, default_size=(h, w))
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    centre = torch.tensor([5.0, 6.0]).view(2, 1, 1)
    field = (centre - torch.stack([ys, xs]).float()).unsqueeze(0)  # D(p) = centroid - p
    pair = pi.to_pair_displacement(field)
    assert pair.shape == (1, 2, pi.n_directions, pi.src_indices.numel())
    assert torch.allclose(pi.to_displacement_loss(pair), torch.zeros(()))
    assert torch.equal(pair[0, :, :, 0].t(), pi.to_displacement())

"""IRN inter-pixel relation geometry (PathIndex), path-max affinities and the random walk.

Conventions (as in the reference, facts §4.5/§4.8):

- A *direction* is an offset (dy, dx) from a source pixel to a destination pixel. The directions
  form a half-plane inside the open disc of radius r, so every unordered pixel pair within the
  radius occurs exactly once.
- Directions are grouped by path length (shortest first); ``search_dst`` lists them in that
  order, which is the order of the affinity / displacement channels everywhere.
- On a grid (H, W) the sources are the pixels in rows [0, H - rf) and columns [rf, W - rf), with
  rf = ceil(r) - 1, so that every destination stays inside the grid. Pixels are addressed by flat
  row-major indices ``y * W + x``.
"""
from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F

__all__ = [
    "PathIndex", "search_paths", "pair_displacement", "edge_to_affinity", "affinity_sparse2dense",
    "to_transition_matrix", "propagate_to_edge_dense", "propagate_to_edge", "transition_matrix_sparse",
]


def search_paths(radius: int) -> list[list[list[tuple[int, int]]]]:
    """Paths of all directions of ``radius``, grouped by path length (ascending).

    Returns ``groups[g][p]`` = list of (y, x) points of one direction's path, destination first and
    (0, 0) last (sorted by decreasing |y| + |x|; ties keep raster order).
    """
    r = int(math.ceil(radius))
    dirs = [(0, x) for x in range(1, r)]
    dirs += [(y, x) for y in range(1, r) for x in range(-r + 1, r) if x * x + y * y < radius * radius]
    by_length: dict[int, list[list[tuple[int, int]]]] = {}
    for dy, dx in dirs:
        len_sq = dy * dy + dx * dx
        points = []
        for y in range(min(0, dy), max(0, dy) + 1):
            for x in range(min(0, dx), max(0, dx) + 1):
                # squared distance of (y, x) to the line through (0, 0) and (dy, dx) is < 1
                if (dy * x - dx * y) ** 2 < len_sq:
                    points.append((y, x))
        points.sort(key=lambda p: -(abs(p[0]) + abs(p[1])))  # stable
        by_length.setdefault(len(points), []).append(points)
    return [by_length[k] for k in sorted(by_length)]


class PathIndex:
    """Directions, paths and flat (source, destination, path) indices of IRN's relation graph."""

    def __init__(self, radius: int = 10, default_size: tuple[int, int] = (32, 32)):
        self.radius = radius
        self.radius_floor = int(math.ceil(radius) - 1)
        self.search_paths = search_paths(radius)
        self.search_dst = torch.tensor([p[0] for group in self.search_paths for p in group],
                                       dtype=torch.long).view(-1, 2)
        self.default_size = (int(default_size[0]), int(default_size[1]))
        self._paths: dict[tuple[int, int], list[torch.Tensor]] = {}
        self._src_dst: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self.path_indices = self.get_path_indices(self.default_size)
        self.src_indices, self.dst_indices = self.get_src_dst(self.default_size)

    # reference names
    @property
    def n_directions(self) -> int:
        return len(self.search_dst)

    def source_shape(self, size: tuple[int, int]) -> tuple[int, int]:
        """(rows, cols) of the source block on a grid of ``size`` (0 when the grid is too small)."""
        rf = self.radius_floor
        ch, cw = max(size[0] - rf, 0), max(size[1] - 2 * rf, 0)
        return (ch, cw) if ch * cw else (0, 0)

    def _block(self, size: tuple[int, int], dy: int, dx: int) -> torch.Tensor:
        """Flat indices of the source block shifted by (dy, dx), [n_src]."""
        ch, cw = self.source_shape(size)
        rows = torch.arange(dy, dy + ch, dtype=torch.long)
        cols = torch.arange(self.radius_floor + dx, self.radius_floor + dx + cw, dtype=torch.long)
        return (rows[:, None] * size[1] + cols[None, :]).reshape(-1)

    def get_path_indices(self, size: tuple[int, int]) -> list[torch.Tensor]:
        """Per path-length group, LongTensor [n_paths, path_len, n_src] of flat indices on ``size``."""
        size = (int(size[0]), int(size[1]))
        if size not in self._paths:
            self._paths[size] = [torch.stack([torch.stack([self._block(size, y, x) for y, x in p]) for p in group])
                                 for group in self.search_paths]
        return self._paths[size]

    def get_src_dst(self, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat indices on ``size``: sources [n_src] and destinations [n_dirs, n_src]."""
        size = (int(size[0]), int(size[1]))
        if size not in self._src_dst:
            dst = torch.stack([self._block(size, int(y), int(x)) for y, x in self.search_dst])
            self._src_dst[size] = (self._block(size, 0, 0), dst)
        return self._src_dst[size]

    def to_displacement(self) -> torch.Tensor:
        """(dy, dx) of every affinity channel, float [n_dirs, 2]."""
        return self.search_dst.float()

    def to_pair_displacement(self, x: torch.Tensor) -> torch.Tensor:
        """x(src) - x(dst) for every direction: [B, C, H, W] -> [B, C, n_dirs, n_src]."""
        src, dst = self.get_src_dst(tuple(x.shape[-2:]))
        return pair_displacement(x, src.to(x.device), dst.to(x.device))

    def to_displacement_loss(self, pos_fg_displacement: torch.Tensor) -> torch.Tensor:
        """|pair displacement - (dy, dx)|, elementwise, for pair displacements [B, 2, n_dirs, n_src]."""
        target = self.to_displacement().to(pos_fg_displacement).t().reshape(1, 2, -1, 1)
        return torch.abs(pos_fg_displacement - target)


def pair_displacement(x: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """x(src) - x(dst): [B, C, H, W], flat src [n_src], dst [n_dirs, n_src] -> [B, C, n_dirs, n_src]."""
    flat = x.flatten(2)
    return flat[:, :, src].unsqueeze(2) - flat[:, :, dst.reshape(-1)].view(*flat.shape[:2], *dst.shape)


def edge_to_affinity(edge: torch.Tensor, path_indices: list[torch.Tensor]) -> torch.Tensor:
    """Affinity = 1 - max edge probability along each path: [B, 1, H, W] -> [B, n_dirs, n_src]."""
    flat = edge.reshape(edge.shape[0], -1)
    out = []
    for ind in path_indices:
        ind = ind.to(flat.device)
        vals = flat[:, ind.reshape(-1)].view(flat.shape[0], *ind.shape)
        out.append(1 - vals.amax(dim=2))
    return torch.cat(out, dim=1)


def affinity_sparse2dense(affinity_sparse: torch.Tensor, ind_from: torch.Tensor, ind_to: torch.Tensor,
                          n_vertices: int) -> torch.Tensor:
    """Dense symmetric [n_vertices, n_vertices] affinity with 1 on the diagonal.

    ``affinity_sparse`` [n_dirs, n_src] (or with a leading 1), ``ind_from`` [n_src], ``ind_to``
    [n_dirs, n_src]; unlisted pairs get 0.
    """
    aff = affinity_sparse.reshape(-1)
    ind_to = torch.as_tensor(ind_to, device=aff.device).reshape(-1)
    ind_from = torch.as_tensor(ind_from, device=aff.device).repeat(ind_to.numel() // max(len(ind_from), 1))
    dense = torch.zeros(n_vertices, n_vertices, dtype=aff.dtype, device=aff.device)
    dense.index_put_((ind_from, ind_to), aff, accumulate=True)
    dense.index_put_((ind_to, ind_from), aff, accumulate=True)
    diag = torch.arange(n_vertices, device=aff.device)
    dense[diag, diag] += 1
    return dense


def to_transition_matrix(affinity_dense: torch.Tensor, beta: float, times: int) -> torch.Tensor:
    """T = A**beta with columns normalised to sum 1, then squared ``times`` times (T^(2^times))."""
    t = affinity_dense.pow(beta)
    t = t / t.sum(dim=0, keepdim=True)
    for _ in range(times):
        t = t @ t
    return t


def _as_grid(x: torch.Tensor, edge: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """x -> [K, h*w] and edge -> [h, w] in a common floating dtype."""
    h, w = x.shape[-2:]
    if edge.numel() != h * w:
        raise ValueError(f"edge map of shape {tuple(edge.shape)} does not match the {h}x{w} grid of x")
    dtype = torch.promote_types(x.dtype, edge.dtype)
    if not dtype.is_floating_point:
        dtype = torch.float32
    return x.reshape(-1, h * w).to(dtype), edge.reshape(h, w).to(dtype), h, w


def _padded_affinity(edge: torch.Tensor, radius: int) -> tuple[torch.Tensor, PathIndex, int, int]:
    """Path-max affinities on the edge map padded with 1.0 (left/right/bottom by ``radius``)."""
    h, w = edge.shape
    hp, wp = h + radius, w + 2 * radius
    path_index = PathIndex(radius=radius, default_size=(hp, wp))
    edge_padded = F.pad(edge[None, None], (radius, radius, 0, radius), mode="constant", value=1.0)
    aff = edge_to_affinity(edge_padded, path_index.path_indices)[0]
    return aff, path_index, hp, wp


def propagate_to_edge_dense(x: torch.Tensor, edge: torch.Tensor, radius: int = 5, beta: float = 10,
                            exp_times: int = 8) -> torch.Tensor:
    """Random walk of x [K, h, w] with the dense transition matrix, as the reference does (oracle).

    ``edge`` is the boundary probability map with h*w elements; returns x's shape. Memory is
    O((hw)^2): only for small grids.
    """
    shape = x.shape
    xf, e, h, w = _as_grid(x, edge)
    r = radius
    aff, path_index, hp, wp = _padded_affinity(e, r)
    dense = affinity_sparse2dense(aff, path_index.src_indices.to(aff.device),
                                  path_index.dst_indices.to(aff.device), hp * wp)
    dense = dense.view(hp, wp, hp, wp)[:-r, r:-r, :-r, r:-r].reshape(h * w, h * w)
    trans = to_transition_matrix(dense, beta=beta, times=exp_times)
    xf = xf * (1 - e).reshape(1, -1)
    return (xf @ trans).view(shape)


def transition_matrix_sparse(edge: torch.Tensor, radius: int = 5, beta: float = 10) -> torch.Tensor:
    """One random-walk step as a sparse CSR matrix S = T^T [hw, hw] (T column-normalised A**beta).

    ``edge`` [h, w]. Row j of S lists T[i, j] over the neighbours i of j (and j itself), so that
    x @ T = (S @ x^T)^T. About hw * (2 * n_dirs + 1) stored entries.
    """
    h, w = edge.shape
    r = radius
    aff, path_index, hp, wp = _padded_affinity(edge, r)
    dev = aff.device
    src = path_index.src_indices.to(dev).unsqueeze(0).expand_as(aff)
    dst = path_index.dst_indices.to(dev)

    def to_real(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        row, col = q // wp, q % wp - r
        return (row < h) & (col >= 0) & (col < w), row * w + col

    ok_s, i = to_real(src)
    ok_d, j = to_real(dst)
    keep = ok_s & ok_d
    i, j, a = i[keep], j[keep], aff[keep].pow(beta)
    diag = torch.arange(h * w, device=dev)
    rows = torch.cat([i, j, diag])  # A[rows, cols] = vals (symmetric, 1 on the diagonal)
    cols = torch.cat([j, i, diag])
    vals = torch.cat([a, a, torch.ones(h * w, dtype=a.dtype, device=dev)])
    col_sum = torch.zeros(h * w, dtype=a.dtype, device=dev).index_add_(0, cols, vals)
    vals = vals / col_sum[cols]
    s = torch.sparse_coo_tensor(torch.stack([cols, rows]), vals, (h * w, h * w), check_invariants=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        return s.coalesce().to_sparse_csr()


def propagate_to_edge(x: torch.Tensor, edge: torch.Tensor, radius: int = 5, beta: float = 10,
                      exp_times: int = 8) -> torch.Tensor:
    """Random walk of x [K, h, w] over the boundary map ``edge`` (h*w elements); returns x's shape.

    Same result as :func:`propagate_to_edge_dense` (the reference): out = (x * (1 - edge)) @ T^(2^exp_times),
    T = column-normalised A**beta. The reference forms T^(2^exp_times) by squaring a dense hw x hw
    matrix exp_times times; since matrix products are associative, x @ T^(2^k) equals applying the
    sparse one-step T to x 2^k times in a row, ((x @ T) @ T) ... @ T. That is what this does, with
    memory O(hw * (2 * n_dirs + 1)) instead of O((hw)^2) and only rounding differences.
    """
    shape = x.shape
    xf, e, h, w = _as_grid(x, edge)
    s = transition_matrix_sparse(e, radius=radius, beta=beta)
    y = (xf * (1 - e).reshape(1, -1)).t().contiguous()  # [hw, K]
    for _ in range(2 ** exp_times):
        y = s @ y
    return y.t().reshape(shape)

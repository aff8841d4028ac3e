"""New values for dropped filters, orthogonal to what the layer already holds (the method's step 4,
"re-introduce"; docs/method.md).

The span of [kept filters' current values; dropped filters' values before dropping] is found with
a rank-revealing QR decomposition (Gram-Schmidt with column pivoting); seeded random vectors are
projected onto its orthogonal complement (the null space) and orthonormalised with a Householder
QR, so each new filter is orthogonal to every kept filter, to its own old value and to the other
new filters. `null_space_basis` extends the span to a basis of the null space with a complete QR.
Pure math: tensors and a torch.Generator in, tensors out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Below this residual norm (on unit-length constraint rows, in float64) a direction counts as
# already spanned: dependent rows do not eat into the null space.
RANK_TOL = 1e-9


def row_space_basis(rows: torch.Tensor, tol: float = RANK_TOL) -> torch.Tensor:
    """Orthonormal basis (D, r) of the span of `rows` (n, D), r = numerical rank.

    Independent rows (every diagonal entry of R above the tolerance) take one Householder QR.
    Otherwise column-pivoted Gram-Schmidt: always take the constraint with the largest residual
    next, so a dependent row is never mistaken for a new direction (unpivoted QR can be).
    """
    a = rows.to(torch.float64).T.clone()  # (D, n)
    d = a.shape[0]
    norms = torch.linalg.vector_norm(a, dim=0)
    keep = norms > 0
    a = a[:, keep] / norms[keep]
    if 0 < a.shape[1] <= d:  # the common case, independent rows: one Householder QR is the basis
        q, r_ = torch.linalg.qr(a)
        if bool((r_.diagonal().abs() > tol).all()):
            return q
    basis = torch.zeros(d, min(a.shape), dtype=torch.float64)
    r = 0
    while r < basis.shape[1]:
        residual = torch.linalg.vector_norm(a, dim=0)
        j = int(torch.argmax(residual))
        if residual[j] <= tol:
            break
        q = a[:, j] / residual[j]
        prev = basis[:, :r]
        q = q - prev @ (prev.T @ q)  # re-orthogonalise: Gram-Schmidt loses orthogonality otherwise
        q = q / torch.linalg.vector_norm(q)
        basis[:, r] = q
        r += 1
        a = a - torch.outer(q, q @ a)
    return basis[:, :r].clone()


def null_space_basis(rows: torch.Tensor, tol: float = RANK_TOL) -> torch.Tensor:
    """Orthonormal basis (D, D - r) of the vectors orthogonal to every row of `rows` (n, D)."""
    span = row_space_basis(rows, tol)
    d, r = span.shape
    if r == 0:
        return torch.eye(d, dtype=torch.float64)
    if r == d:
        return torch.zeros(d, 0, dtype=torch.float64)
    q, _ = torch.linalg.qr(span, mode="complete")  # first r columns span `span`, the rest its complement
    return q[:, r:]


@dataclass
class NewFilters:
    rows: torch.Tensor  # (k, D) float64, each of norm `scale`
    null_space: int  # how many are orthogonal to kept filters and to the old values
    kept_only: int  # orthogonal to kept filters only (no room for the old values too)
    random: int  # plain random directions (no room at all: J >= D, e.g. a first layer)


def _project_out(span: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """`vectors` (D, m) with their components inside span(span) removed, twice for accuracy."""
    for _ in range(2):
        vectors = vectors - span @ (span.T @ vectors)
    return vectors


def _directions(span: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    """The seeded random `draws` (D, m) projected onto the orthogonal complement of `span` and
    orthonormalised by QR, as rows (m, D); m <= D - span.shape[1].

    Projecting fixed random vectors, rather than combining a basis of the null space, makes the
    result depend only on the subspace, not on which basis a decomposition happened to return:
    tiny differences in the kept filters (another device, another process) give tiny differences
    in the new filters, not different ones."""
    q, _ = torch.linalg.qr(_project_out(span, draws))
    q = _project_out(span, q)  # QR's rounding can leak back into the span: remove it, renormalise
    return (q / torch.linalg.vector_norm(q, dim=0, keepdim=True)).T


def new_filters(kept: torch.Tensor, old: torch.Tensor, *, scale: float, generator: torch.Generator) -> NewFilters:
    """Values for the k = len(old) dropped filters of one layer (or one group of a grouped conv).

    kept: (n, D) current values of the kept filters; old: (k, D) the dropped filters' values
    before they were dropped. Falls back, and says so, when the layer lacks room:
    1. null space of [kept; old] (the method);
    2. null space of kept alone, for what does not fit in 1;
    3. random directions (orthogonalised among themselves where possible) for the rest.
    """
    kept, old = kept.detach().cpu().to(torch.float64), old.detach().cpu().to(torch.float64)
    k, d = old.shape
    draws = torch.randn(d, k, generator=generator, dtype=torch.float64)
    out: list[torch.Tensor] = []
    span = row_space_basis(torch.cat([kept, old]))
    n1 = min(k, d - span.shape[1])
    if n1:
        out.append(_directions(span, draws[:, :n1]))
    n2 = 0
    if n1 < k:
        # Orthogonal to the kept filters and to the new ones of fallback 1 (not to the old values).
        span = row_space_basis(torch.cat([kept, *out]))
        n2 = min(k - n1, d - span.shape[1])
        if n2:
            out.append(_directions(span, draws[:, n1 : n1 + n2]))
    n3 = k - n1 - n2
    if n3:
        rand = draws[:, n1 + n2 :].T
        out.append(rand / torch.linalg.vector_norm(rand, dim=1, keepdim=True))
    rows = torch.cat(out) if out else torch.zeros(0, d, dtype=torch.float64)
    return NewFilters(rows * scale, n1, n2, n3)


def filter_scale(kept: torch.Tensor, old: torch.Tensor) -> float:
    """Norm for the new filters: the mean norm of the kept filters, so a new filter starts at the
    layer's typical scale (then the old values' mean norm, then 1/sqrt(D) when all are zero)."""
    for rows in (kept, old):
        norms = torch.linalg.vector_norm(rows.to(torch.float64), dim=1)
        norms = norms[norms > 0]
        if norms.numel():
            return float(norms.mean())
    return float(kept.shape[1] ** -0.5)

"""Vectorised ranking metrics, one implementation for every protocol (taught in `00_foundations`,
section "Metrics").

Input: a score matrix ``[B, C]`` over C candidates (the whole catalogue, or a target plus sampled
negatives) and a boolean matrix ``relevant`` of the same shape marking the held-out items.

Ties are pessimistic: an item that scores the same as a relevant item is ranked *above* it. A
model that gives every item the same score therefore gets the worst possible rank, never a lucky
one (putting the positive first among equal scores is a classic source of inflated results).
Items a protocol masks get the score ``-inf`` and so rank last.

Definitions for a user with ``R`` relevant items and hits ``h_1..h_C`` down the ranking:

* ``HR@k``       1 if any of the top k is relevant
* ``Recall@k``   ``sum_{i<=k} h_i / R``  (``/ min(k, R)`` with ``recall_denominator="min(k,R)"``,
                 the definition of Liang et al. 2018 used by Mult-VAE and RaCT)
* ``NDCG@k``     ``sum_{i<=k} h_i / log2(i + 1)`` divided by its best value with ``min(R, k)`` hits
* ``MAP@k``      ``sum_{i<=k} h_i * Precision@i / min(R, k)``
* ``MRR``        ``1 / rank of the first relevant item`` over the whole candidate list
* ``MRR@k``      the same, 0 when the first relevant item ranks below k (RecBole's MRR@k)
"""
from __future__ import annotations

import torch

RECALL_DENOMINATORS = ("R", "min(k,R)")


def rank_candidates(scores: torch.Tensor, relevant: torch.Tensor) -> torch.Tensor:
    """Candidate indices sorted best first, ties broken against relevant items: ``[B, C]``."""
    # A stable sort keeps the order of equal keys, so sort first by relevance (non-relevant
    # first), then stably by score: among equal scores, non-relevant items come first.
    by_relevance = torch.argsort(relevant.to(torch.int8), dim=1, stable=True)
    by_score = torch.argsort(scores.gather(1, by_relevance), dim=1, descending=True, stable=True)
    return by_relevance.gather(1, by_score)


def top_ranked(scores: torch.Tensor, relevant: torch.Tensor, k: int) -> torch.Tensor:
    """The first ``k`` entries of `rank_candidates`, without sorting whole rows: only the items
    scoring at least the k-th best score can be in the top k, so only those are sorted."""
    k = min(k, scores.shape[1])
    best = scores.topk(k, dim=1)
    width = int((scores >= best.values[:, -1:]).sum(1).max())  # > k when ties cross place k
    shortlist = best.indices if width == k else scores.topk(width, dim=1).indices
    order = rank_candidates(scores.gather(1, shortlist), relevant.gather(1, shortlist))
    return shortlist.gather(1, order[:, :k])


def _check(scores: torch.Tensor, relevant: torch.Tensor) -> None:
    if scores.shape != relevant.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and relevant {tuple(relevant.shape)} "
                         "must have the same shape")
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN: the model produced invalid scores")


def ndcg_from_hits(hits: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    """NDCG@k from the hits down the ranking ``[B, >= k]``: DCG of the top k over the DCG of
    ``min(R, k)`` hits at the top. The one NDCG of the library; users with ``R = 0`` get 0."""
    top = hits[:, :k].float()
    discount = 1.0 / torch.log2(torch.arange(2, top.shape[1] + 2, device=hits.device,
                                             dtype=torch.float32))
    ideal = torch.cat([discount.new_zeros(1), discount.cumsum(0)])  # ideal[n]: n hits on top
    n_ideal = n_relevant.clamp(max=top.shape[1]).long()
    return (top * discount).sum(1) / ideal[n_ideal].clamp(min=1.0) * (n_ideal > 0)


def top_k_ndcg(scores: torch.Tensor, relevant: torch.Tensor, k: int) -> torch.Tensor:
    """NDCG@k of every row ``[B]``, the batched training target of RaCT's critic (`04_ract`,
    section "The critic"): the same ranking (pessimistic ties) and NDCG as `ranking_metrics`,
    except that a row without relevant items gets 0 instead of an error (input dropout can keep
    all of a user's items). Masked candidates should score ``-inf`` and not be relevant."""
    _check(scores, relevant)
    if k < 1:
        raise ValueError(f"k must be >= 1; got {k}")
    hits = relevant.gather(1, top_ranked(scores, relevant, k))
    return ndcg_from_hits(hits, relevant.sum(1), k)


def ranking_metrics(scores: torch.Tensor, relevant: torch.Tensor, ks=(10,),
                    recall_denominator: str = "R") -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per-user metrics ``{name: [B]}`` and the top-``max(ks)`` candidate indices ``[B, k]``."""
    _check(scores, relevant)
    if recall_denominator not in RECALL_DENOMINATORS:
        raise ValueError(f"recall_denominator must be one of {RECALL_DENOMINATORS}")
    n_relevant = relevant.sum(1)
    if (n_relevant == 0).any():
        raise ValueError("every user needs at least one relevant candidate")
    top = top_ranked(scores, relevant, max(ks))
    hits = relevant.gather(1, top).float()  # [B, k], best first
    first_rank = first_relevant_rank(scores, relevant)
    out = {"MRR": 1.0 / first_rank.float()}
    for k in ks:
        out.update(metrics_at_k(hits, n_relevant, first_rank, k, recall_denominator))
    return out, top


def first_relevant_rank(scores: torch.Tensor, relevant: torch.Tensor) -> torch.Tensor:
    """The rank of each row's best-scoring relevant item ``[B]``, ties pessimistic: every
    non-relevant item scoring at least as high ranks above it (MRR is one over this rank)."""
    best_relevant = scores.masked_fill(~relevant, float("-inf")).max(1, keepdim=True).values
    return 1 + ((scores >= best_relevant) & ~relevant).sum(1)


def metrics_at_k(hits: torch.Tensor, n_relevant: torch.Tensor, first_rank: torch.Tensor, k: int,
                 recall_denominator: str = "R") -> dict[str, torch.Tensor]:
    """HR@k, Recall@k, NDCG@k, MAP@k and MRR@k ``{name: [B]}`` from the hits down the ranking
    ``hits [B, >= k]`` (1.0 where the item at that place is relevant), ``R = n_relevant`` and
    `first_relevant_rank`; the equations of `00_foundations`, section "Metrics"."""
    top_k = hits[:, :k]  # fewer columns when there are fewer than k candidates
    n_hits = top_k.sum(1)
    capped = torch.clamp(n_relevant, max=k).float()                            # min(k, R)
    positions = torch.arange(1, top_k.shape[1] + 1, device=hits.device, dtype=torch.float32)
    precision_at_i = top_k.cumsum(1) / positions
    return {f"HR@{k}": (n_hits > 0).float(),
            f"Recall@{k}": n_hits / (n_relevant.float() if recall_denominator == "R" else capped),
            f"NDCG@{k}": ndcg_from_hits(top_k, n_relevant, k),
            f"MAP@{k}": (top_k * precision_at_i).sum(1) / capped,
            f"MRR@{k}": (1.0 / first_rank.float()) * (first_rank <= k)}


def horizon_curves(top: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-position curves of recommendation lists ``top [B, k]`` against chronological held-out
    items ``targets [B, T]`` (`05_autoregressive_generation`, section "Per-position curves"):

    * ``"hit"``  ``[B, T]``: 1 if the item at horizon position j is in the list (HR@k of that
      item alone);
    * ``"NDCG"`` ``[B, T]``: NDCG@k against the items at positions ``<= j`` as a set (so column
      ``T - 1`` is the set NDCG@k of `ranking_metrics` over the whole horizon).
    """
    if (targets == 0).any():
        raise ValueError("horizon_curves needs every user to have T held-out items (no PAD)")
    match = top.unsqueeze(2) == targets.unsqueeze(1)                    # [B, k, T]
    # the horizon position of each listed item (T when it is not held out)
    position = torch.where(match.any(2), match.float().argmax(2), targets.shape[1])
    k = top.shape[1]
    ndcg = [ndcg_from_hits(position <= j, torch.full_like(position[:, 0], j + 1), k)
            for j in range(targets.shape[1])]
    return {"hit": match.any(1).float(), "NDCG": torch.stack(ndcg, 1)}

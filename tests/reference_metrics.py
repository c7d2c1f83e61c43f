"""An independent, deliberately plain implementation of the ranking metrics: Python lists and
`sorted`, one user at a time. The tests compare coldrec_lib.metrics against it."""
import math


def ranked_hits(scores, relevant):
    """Hits down the ranking, with ties broken against relevant items (pessimistic)."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], relevant[i]))
    return [1 if relevant[i] else 0 for i in order]


def user_metrics(scores, relevant, k, recall_denominator="R"):
    hits = ranked_hits(scores, relevant)
    n_rel = sum(1 for r in relevant if r)
    top = hits[:k]
    denominator = n_rel if recall_denominator == "R" else min(k, n_rel)
    dcg = sum(h / math.log2(i + 2) for i, h in enumerate(top))
    idcg = sum(1 / math.log2(i + 2) for i in range(min(n_rel, k)))
    precision_sum, found = 0.0, 0
    for i, h in enumerate(top):
        if h:
            found += 1
            precision_sum += found / (i + 1)
    first = hits.index(1) + 1
    return {
        f"HR@{k}": float(any(top)),
        f"Recall@{k}": sum(top) / denominator,
        f"NDCG@{k}": dcg / idcg,
        f"MAP@{k}": precision_sum / min(n_rel, k),
        "MRR": 1 / first,
        f"MRR@{k}": 1 / first if first <= k else 0.0,
    }


def ndcg_or_zero(scores, relevant, k):
    """NDCG@k as RaCT's critic target uses it: 0 for a user with nothing relevant."""
    return user_metrics(scores, relevant, k)[f"NDCG@{k}"] if any(relevant) else 0.0

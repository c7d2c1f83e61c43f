"""Autoregressive generation strategies for long-horizon recommendation (Volodkevich et al.,
arXiv 2409.17730; taught in `05_autoregressive_generation`, section "Strategies").

Each strategy turns a batch of users into ``k`` ranked items (the next-``k`` horizon):

* `TopK`      one forward pass, the ``k`` best unseen items (any `Recommender`);
* `Greedy`    generate ``k`` items, each the argmax given the items generated before it;
* `BeamSearch` keep the ``num_beams`` most probable item sequences; return the best one;
* `Sampling`  draw ``n_sequences`` sequences at ``temperature`` among the ``top_k`` best items, and
  aggregate them: ``"rra"`` (reciprocal rank: the item at position i of a sequence scores
  ``1 / i``, summed over sequences) or ``"ra"`` (relevance: the sampling probabilities summed over
  steps and sequences). One sequence with ``"rra"`` is plain temperature sampling.

Every generated item is masked in the rest of its sequence, and so is the user's **whole**
history (the original's multi-sequence strategy masked only the cropped context and recommended
already-seen items). The prompt is encoded once and its key/value cache reused: shared (not
re-encoded, not even copied) by the beams and by every sampled sequence. The temperature is
applied once (the original's relevance aggregation applied it twice).

The prompt is the most recent ``context - k + 1`` history items, so that the prompt and the
``k - 1`` items fed back fit the model's context: a longer history is truncated (documented
here, and shown in the notebook), never an error; the mask still covers all of it.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import (LogitsProcessor, LogitsProcessorList, TemperatureLogitsWarper,
                          TopKLogitsWarper)

from .data.interactions import PAD
from .data.splits import EvalBatch, EvalSet
from .evaluation import eval_mode, full_scores
from .models.base import Recommender

AGGREGATIONS = ("rra", "ra")


# ---------------------------------------------------------------------- masking and prompts
def seen_items(history: torch.Tensor, n_items: int) -> torch.Tensor:
    """``[B, n_items + 1]`` True for PAD and every item of each user's whole history."""
    banned = torch.zeros(len(history), n_items + 1, dtype=torch.bool, device=history.device)
    banned[:, PAD] = True
    return banned.scatter_(1, history, True)


def check_room(batch: EvalBatch, banned: torch.Tensor, need: int, what: str) -> None:
    """An error naming the first user with fewer than ``need`` unseen items for ``what``."""
    left = (~banned).sum(1)
    short = (left < need).nonzero()
    if len(short):
        row = int(short[0])
        raise ValueError(f"user {int(batch.users[row])} has {int(left[row])} catalogue items left "
                         f"after masking their history; {what} needs {need}")


def prompt_of(model, history: torch.Tensor, k: int) -> torch.Tensor:
    """The most recent ``context - k + 1`` items: room for the ``k - 1`` items fed back."""
    room = model.config.context - (k - 1)
    if room < 1:
        raise ValueError(f"a horizon of k={k} items does not fit the model's context "
                         f"{model.config.context}")
    return history[:, -room:]


def warp(logits: torch.Tensor, temperature: float,
         top_k: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The sampling distribution, once: (probabilities ``[R, m]``, their item ids ``[R, m]``) of
    ``softmax(logits / T)`` restricted to the ``top_k`` best (all items when None)."""
    if top_k is not None and top_k < logits.shape[1]:
        values, items = logits.topk(top_k, dim=1)
    else:
        values = logits
        items = torch.arange(logits.shape[1], device=logits.device).expand_as(logits)
    return F.softmax(values / temperature, dim=1), items


# ---------------------------------------------------------------------- strategies
@dataclass(frozen=True)
class TopK:
    """One forward pass; the ``k`` best-scoring unseen items (eq. "top-K" of section 2)."""

    @property
    def name(self) -> str:
        return "top-K"

    def rank(self, model, batch: EvalBatch, k: int, generator=None) -> torch.Tensor:
        check_room(batch, seen_items(batch.history, model.n_items), k, f"{self.name} over k={k}")
        return full_scores(model, batch, model.n_items).topk(k, dim=1).indices


def decode(model, batch: EvalBatch, k: int, pick, repeats: int = 1) -> torch.Tensor:
    """``k`` items for each of ``repeats`` sequences per user ``[B * repeats, k]`` (rows of a user
    adjacent): the prompt is encoded once, its cache shared by the rows, and
    ``pick(masked logits) -> [R]`` chooses each next item; seen and generated items are at -inf."""
    banned = seen_items(batch.history, model.n_items)
    check_room(batch, banned, k, f"generating k={k} distinct unseen items")
    logits, cache = model.prompt(prompt_of(model, batch.history, k))
    cache.repeat(repeats)
    logits, banned = logits.repeat_interleave(repeats, 0), banned.repeat_interleave(repeats, 0)
    rows, items = torch.arange(len(logits), device=logits.device), []
    for step in range(k):
        chosen = pick(logits.masked_fill_(banned, float("-inf")))
        banned[rows, chosen] = True
        items.append(chosen)
        if step < k - 1:
            logits = model.step(chosen, cache)
    return torch.stack(items, 1)


@dataclass(frozen=True)
class Greedy:
    """Generate ``k`` items, each the most probable unseen one given those before it."""

    @property
    def name(self) -> str:
        return "greedy"

    def rank(self, model, batch: EvalBatch, k: int, generator=None) -> torch.Tensor:
        return decode(model, batch, k, lambda logits: logits.argmax(1))


@dataclass(frozen=True)
class BeamSearch:
    """Keep the ``num_beams`` sequences of highest log-probability ``sum_t log p(i_t | ...)``,
    with the probabilities renormalised over the unseen items; return the best sequence."""

    num_beams: int = 5

    def __post_init__(self):
        if self.num_beams < 1:
            raise ValueError(f"num_beams must be >= 1; got {self.num_beams}")

    @property
    def name(self) -> str:
        return f"beam search ({self.num_beams} beams)"

    def rank(self, model, batch: EvalBatch, k: int, generator=None) -> torch.Tensor:
        beams = self.num_beams
        banned = seen_items(batch.history, model.n_items)
        check_room(batch, banned, max(beams, k), f"{self.name} over k={k}")
        logits, cache = model.prompt(prompt_of(model, batch.history, k))
        n_users, width = logits.shape
        log_p = F.log_softmax(logits.masked_fill(banned, float("-inf")), dim=1)
        score, chosen = log_p.topk(beams, dim=1)                       # [B, beams]
        cache.repeat(beams)
        banned = banned.repeat_interleave(beams, 0)
        chosen, rows = chosen.reshape(-1), torch.arange(n_users * beams, device=logits.device)
        banned[rows, chosen] = True
        sequences = chosen.unsqueeze(1)
        for _ in range(k - 1):
            logits = model.step(chosen, cache)
            log_p = F.log_softmax(logits.masked_fill(banned, float("-inf")), dim=1)
            total = (score.reshape(-1, 1) + log_p).view(n_users, beams * width)
            score, flat = total.topk(beams, dim=1)
            source = (flat // width + torch.arange(n_users, device=flat.device).unsqueeze(1)
                      * beams).reshape(-1)
            chosen = (flat % width).reshape(-1)
            cache.reorder(source)
            banned = banned[source]
            banned[rows, chosen] = True
            sequences = torch.cat([sequences[source], chosen.unsqueeze(1)], 1)
        return sequences.view(n_users, beams, k)[:, 0]  # topk sorts: beam 0 is the best


@dataclass(frozen=True)
class Sampling:
    """``n_sequences`` sequences sampled from ``softmax(logits / temperature)`` among the
    ``top_k`` best unseen items, aggregated into one ranking (module docstring)."""

    temperature: float = 1.0
    top_k: int | None = None
    n_sequences: int = 1
    aggregation: str = "rra"

    def __post_init__(self):
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0; got {self.temperature}")
        if self.n_sequences < 1:
            raise ValueError(f"n_sequences must be >= 1; got {self.n_sequences}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None; got {self.top_k}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}; got "
                             f"{self.aggregation!r}")

    @property
    def name(self) -> str:
        top = "" if self.top_k is None else f", top-{self.top_k}"
        if self.n_sequences == 1 and self.aggregation == "rra":
            return f"sampling (T={self.temperature}{top})"
        return (f"{self.aggregation.upper()} ({self.n_sequences} seq., T={self.temperature}"
                f"{top})")

    def rank(self, model, batch: EvalBatch, k: int, generator=None) -> torch.Tensor:
        relevance = [0.0]  # RA: the running sum of the sampling distributions

        def pick(logits: torch.Tensor) -> torch.Tensor:
            probs, items = warp(logits, self.temperature, self.top_k)
            if self.aggregation == "ra":
                relevance[0] = torch.zeros_like(logits).scatter_(1, items, probs) + relevance[0]
            return items.gather(1, torch.multinomial(probs, 1, generator=generator)).squeeze(1)

        sequences = decode(model, batch, k, pick, self.n_sequences)  # [B * S, k]
        n_users = len(batch.history)
        if self.aggregation == "ra":
            scores = relevance[0].view(n_users, self.n_sequences, -1).sum(1)
        else:
            scores = reciprocal_rank_scores(sequences.view(n_users, self.n_sequences, k),
                                            model.n_items)
        # a stable sort ranks ties (e.g. items no sequence reached) by item id, reproducibly
        scores = scores.masked_fill(seen_items(batch.history, model.n_items), float("-inf"))
        return scores.sort(dim=1, descending=True, stable=True).indices[:, :k]


def reciprocal_rank_scores(sequences: torch.Tensor, n_items: int) -> torch.Tensor:
    """RRA: ``[B, S, k]`` sequences to item scores ``[B, n_items + 1]``, the item at position i
    (1-based) of a sequence scoring ``1 / i``, summed over the sequences."""
    n_users, n_sequences, k = sequences.shape
    weight = 1.0 / torch.arange(1, k + 1, device=sequences.device, dtype=torch.float32)
    scores = torch.zeros(n_users, n_items + 1, device=sequences.device)
    return scores.scatter_add_(1, sequences.reshape(n_users, -1),
                               weight.repeat(n_sequences).expand(n_users, -1))


# ---------------------------------------------------------------------- over an eval set
@torch.no_grad()
def generate_lists(model, strategy, eval_set: EvalSet, k: int = 10, batch_size: int = 64,
                   seed: int = 0, progress: bool = False) -> torch.Tensor:
    """Every user's ``k`` recommended items ``[N, k]`` (row n = ``eval_set.users[n]``), best
    first, in eval mode, with a sampling generator seeded by ``seed``. Users go through in
    batches of similar history length (less left padding to encode and attend over)."""
    device = next(itertools.chain(model.parameters(), model.buffers())).device
    generator = torch.Generator(device=device).manual_seed(seed)
    order = torch.argsort(eval_set.history.lengths[torch.arange(len(eval_set))], stable=True)
    lists = torch.zeros(len(eval_set), k, dtype=torch.long)
    with eval_mode(model):
        for rows in tqdm(order.split(batch_size), disable=not progress, desc=strategy.name,
                         leave=False):
            lists[rows] = strategy.rank(model, eval_set.batch(rows).to(device), k,
                                        generator).cpu()
    return lists


class RankedLists(Recommender):
    """Precomputed recommendation lists as a `Recommender`, so the `Evaluator` scores them: the
    item at place p of a user's list scores ``k - p``, every other item 0."""

    def __init__(self, users: torch.Tensor, lists: torch.Tensor, n_items: int):
        super().__init__()
        self.n_items = n_items
        self.register_buffer("lists", lists)
        self.register_buffer("row", torch.full((int(users.max()) + 1,), -1, dtype=torch.long))
        self.row[users] = torch.arange(len(users))

    def score(self, batch: EvalBatch) -> torch.Tensor:
        rows = self.row[batch.users]
        if (rows < 0).any():
            raise ValueError("RankedLists: a user without a precomputed list was asked for")
        k = self.lists.shape[1]
        scores = torch.zeros(len(rows), self.n_items + 1, device=rows.device)
        place = torch.arange(k, 0, -1, device=rows.device, dtype=torch.float32)
        return scores.scatter_(1, self.lists[rows], place.expand(len(rows), -1))


# ---------------------------------------------------------------------- Hugging Face reference
class MaskSeen(LogitsProcessor):
    """For ``generate()``: -inf for PAD, the BOUNDARY token, the ``banned`` items (the whole
    history) and every token already in the sequence (prompt and generated items)."""

    def __init__(self, banned: torch.Tensor, boundary: int):
        self.banned, self.boundary = banned, boundary

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.clone()
        scores[:, :self.banned.shape[0]].masked_fill_(self.banned, float("-inf"))
        scores[:, self.boundary] = float("-inf")
        return scores.scatter_(1, input_ids, float("-inf"))


@torch.no_grad()
def hf_generate(model, batch: EvalBatch, strategy, k: int = 10) -> torch.Tensor:
    """The same strategy through Hugging Face ``generate()``, one user (``batch`` of one row):
    ``[n_sequences, k]`` items. The reference that `benchmarks/generation.py` times and the tests
    compare against (greedy decoding gives identical items). Sampling draws from torch's global
    generator (seed it with ``torch.manual_seed``)."""
    if len(batch.history) != 1:
        raise ValueError(f"hf_generate takes one user; got {len(batch.history)}")
    history = batch.history[batch.history != PAD].unsqueeze(0)
    prompt = prompt_of(model, history, k)
    processors = LogitsProcessorList([MaskSeen(seen_items(history, model.n_items)[0],
                                               model.boundary)])
    if isinstance(strategy, Greedy):
        options = dict(do_sample=False, num_return_sequences=1)
    elif isinstance(strategy, Sampling):
        # the mask must come before the temperature and top-k warpers, so they are ours
        processors.append(TemperatureLogitsWarper(strategy.temperature))
        if strategy.top_k is not None:
            processors.append(TopKLogitsWarper(strategy.top_k))
        options = dict(do_sample=True, num_return_sequences=strategy.n_sequences,
                       temperature=1.0, top_k=0)
    else:
        raise ValueError(f"hf_generate supports Greedy and Sampling; got {strategy.name}")
    with eval_mode(model):
        out = model.gpt.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt),
                                 max_new_tokens=k, min_new_tokens=k, logits_processor=processors,
                                 **options)
    return out[:, prompt.shape[1]:]

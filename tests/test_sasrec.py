"""SASRec: padding is masked, attention is causal, batches are shifted correctly, it learns."""
import pytest
import torch

from coldrec_lib.data import Sequences, leave_one_out, make_synthetic
from coldrec_lib.data.splits import EvalBatch
from coldrec_lib.evaluation import Evaluator, FullRanking
from coldrec_lib.models.popularity import Popularity
from coldrec_lib.models.sasrec import SASRec, SASRecConfig, next_item_batches
from coldrec_lib.training import fit

N_ITEMS = 30



def small_model(**overrides) -> SASRec:
    torch.manual_seed(0)
    return SASRec(N_ITEMS, SASRecConfig(max_len=8, dim=16, n_heads=2, n_layers=2,
                                        **overrides)).eval()


def as_batch(history: torch.Tensor) -> EvalBatch:
    return EvalBatch(torch.arange(len(history)), history, torch.ones(len(history), 1).long())


def test_left_padding_does_not_change_the_score():
    model = small_model()
    sequence = torch.tensor([[4, 9, 2]])
    scores = model.score(as_batch(sequence))
    for n_pad in (1, 3, 5):
        padded = torch.cat([torch.zeros(1, n_pad, dtype=torch.long), sequence], 1)
        torch.testing.assert_close(model.score(as_batch(padded)), scores)
    assert torch.isinf(scores[:, 0]).all() and torch.isfinite(scores[:, 1:]).all()


def test_padding_rows_in_one_batch_match_unpadded_rows():
    model = small_model()
    batch = torch.tensor([[0, 0, 0, 5, 6], [1, 2, 3, 4, 7]])
    together = model.score(as_batch(batch))
    torch.testing.assert_close(together[0], model.score(as_batch(batch[:1, 3:]))[0])
    torch.testing.assert_close(together[1], model.score(as_batch(batch[1:]))[0])


def test_attention_is_causal():
    model = small_model()
    a = torch.tensor([[3, 4, 5, 6, 7]])
    b = a.clone()
    b[0, -1] = 20
    hidden_a, hidden_b = model.encode(a), model.encode(b)
    torch.testing.assert_close(hidden_a[:, :-1], hidden_b[:, :-1])
    assert not torch.allclose(hidden_a[:, -1], hidden_b[:, -1])


def test_next_item_batches_shift_and_skip_short_users():
    sequences = Sequences(torch.tensor([1, 2, 3, 4, 5, 6, 7, 8, 9]), torch.tensor([0, 1, 4, 9]))
    batches = list(next_item_batches(sequences, max_len=3, batch_size=10,
                                     generator=torch.Generator().manual_seed(0)))
    assert len(batches) == 1
    inputs, targets = batches[0]
    assert inputs.shape == targets.shape == (2, 3)  # user 0 (one item) is skipped
    rows = {tuple(t.tolist()): tuple(i.tolist()) for i, t in zip(inputs, targets)}
    assert rows == {(2, 3, 4): (0, 2, 3), (7, 8, 9): (6, 7, 8)}


def test_loss_ignores_padded_positions():
    model = small_model(dropout=0.0).train()
    inputs = torch.tensor([[0, 0, 3, 4]])
    targets = torch.tensor([[0, 3, 4, 5]])
    # only the positions whose input and target are both real items count
    hidden = model.encode(inputs)
    expected = torch.nn.functional.cross_entropy(model.logits(hidden[0, 2:]), targets[0, 2:])
    torch.testing.assert_close(model.loss((inputs, targets)), expected)


def test_bad_input_gets_clear_errors():
    with pytest.raises(ValueError, match="exceed max_len"):
        small_model().encode(torch.ones(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible"):
        SASRec(N_ITEMS, SASRecConfig(dim=10, n_heads=3))
    with pytest.raises(ValueError, match="2 items"):
        list(next_item_batches(Sequences(torch.tensor([1]), torch.tensor([0, 1])), 4, 2,
                               torch.Generator()))


def train(split, n_items, epochs, seed=0):
    torch.manual_seed(seed)
    config = SASRecConfig(max_len=20, dim=32, n_heads=1, n_layers=1, batch_size=64, lr=3e-3)
    model = SASRec(n_items, config)
    sequences = Sequences.from_frame(split.train, split.n_users)
    generator = torch.Generator().manual_seed(seed)
    fit(model, torch.optim.Adam(model.parameters(), lr=config.lr),
        lambda epoch: next_item_batches(sequences, config.max_len, config.batch_size, generator),
        max_epochs=epochs, progress=False)
    return model


def test_sasrec_learns_and_is_deterministic():
    data = make_synthetic(n_users=400, n_items=200, seed=0)
    split = leave_one_out(data)
    evaluator = Evaluator(split.test, FullRanking(ks=(10,)), data.n_items)
    model = train(split, data.n_items, epochs=8)
    sasrec = evaluator.evaluate(model).metrics["NDCG@10"]
    popularity = evaluator.evaluate(Popularity(split.train, data.n_items)).metrics["NDCG@10"]
    assert sasrec > 1.15 * popularity  # 1.55-2.06 times over seeds 0-4: clear of the bar
    again = train(split, data.n_items, epochs=8)
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)

"""Functional MAML++ (coldrec_lib/meta/maml.py): the vectorised meta-batch against the
task-by-task loop, the schedules, positive inner learning rates, first vs second order."""
import pytest
import torch
from torch import nn

from coldrec_lib.data import Sequences, make_synthetic
from coldrec_lib.data.melo_tasks import melo_tasks
from coldrec_lib.meta.maml import MAML, MAMLConfig, multi_step_weights, query_losses_loop
from coldrec_lib.models.melo import MetalLoss, TaskStateLoss


class TinyRater(nn.Module):
    """A small sequence model (embedding, causal running mean, linear): rating / 5 per position."""

    def __init__(self, n_items: int, dim: int = 6):
        super().__init__()
        self.items = nn.Embedding(n_items + 1, dim)
        self.out = nn.Linear(dim, 1)

    def forward(self, items):
        x = self.items(items) * (items != 0).unsqueeze(-1)
        mean = x.cumsum(-2) / (items != 0).cumsum(-1).clamp(min=1).unsqueeze(-1)
        return 0.1 + torch.sigmoid(self.out(torch.tanh(mean)).squeeze(-1))


@pytest.fixture(scope="module")
def small_tasks():
    data = make_synthetic(n_users=40, n_items=50, seed=1)
    sequences = Sequences.from_frame(data.frame, data.n_users)
    tasks = melo_tasks(sequences, torch.arange(6), max_len=8, n_support=5, n_query=2, train=True,
                       generator=torch.Generator().manual_seed(0))
    return data.n_items, tasks


def _maml(n_items, loss=None, **config):
    torch.manual_seed(0)
    config = MAMLConfig(inner_lr=0.5, **config)
    return MAML(TinyRater(n_items), config, loss)


@pytest.mark.parametrize("loss", [None, "lstm", "metal"])
@pytest.mark.parametrize("second_order", [True, False])
def test_vectorised_equals_loop(small_tasks, loss, second_order):
    n_items, tasks = small_tasks
    torch.manual_seed(1)
    inner = {None: None, "lstm": TaskStateLoss(), "metal": MetalLoss()}[loss]
    maml = _maml(n_items, inner)
    vectorised, _ = maml.adapt(tasks, create_graph=second_order)
    loop = query_losses_loop(maml, tasks, create_graph=second_order)
    torch.testing.assert_close(vectorised, loop, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(vectorised[:, 0], vectorised[:, -1])  # the inner steps moved
    # the meta-gradients agree too (second order: through the inner gradients)
    params = [p for p in maml.parameters() if p.requires_grad]
    g_vec = torch.autograd.grad(vectorised.sum(), params, allow_unused=True)
    g_loop = torch.autograd.grad(query_losses_loop(maml, tasks, second_order).sum(), params,
                                 allow_unused=True)
    for a, b in zip(g_vec, g_loop):
        if a is None or b is None:
            assert a is None and b is None or (a if b is None else b).abs().max() == 0
        else:
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


def test_loss_network_learns_only_through_second_order(small_tasks):
    n_items, tasks = small_tasks
    for second_order, expect in ((True, True), (False, False)):
        maml = _maml(n_items, TaskStateLoss(), second_order=second_order)
        maml.loss(tasks).backward()
        moved = any(p.grad is not None and p.grad.abs().sum() > 0
                    for p in maml.inner_loss.parameters())
        assert moved == expect


def test_derivative_order_annealing(small_tasks):
    maml = _maml(small_tasks[0], first_order_iterations=10)
    assert not maml.second_order()
    maml.iteration = 10
    assert maml.second_order()


def test_multi_step_weights_schedule():
    start = multi_step_weights(3, 0, 100)
    torch.testing.assert_close(start, torch.full((3,), 1 / 3))
    middle = multi_step_weights(3, 50, 100)
    assert middle[-1] > start[-1] and (middle[:-1] < start[:-1]).all()
    assert abs(float(middle.sum()) - 1) < 1e-6
    torch.testing.assert_close(multi_step_weights(3, 100, 100), torch.tensor([0.0, 0.0, 1.0]))


def test_inner_learning_rates_stay_positive(small_tasks):
    n_items, tasks = small_tasks
    maml = _maml(n_items)
    optimizer = torch.optim.SGD(maml.log_lrs.parameters(), lr=10.0)
    maml.loss(tasks).backward()
    for p in maml.log_lrs.parameters():  # a step that would push unconstrained rates (1e-3 - 10 * 2) far below 0
        p.grad = p.grad.sign().abs() + 1.0
    optimizer.step()
    assert all((lr > 0).all() for lr in maml.inner_lrs().values())
    assert all(lr.shape == (maml.config.inner_steps,) for lr in maml.inner_lrs().values())


def test_predict_adapts_and_returns_ratings(small_tasks):
    n_items, tasks = small_tasks
    maml = _maml(n_items)
    pred = maml.predict(tasks)
    assert pred.shape == (len(tasks),) and not pred.requires_grad
    assert ((pred > 0) & (pred < 5.5)).all()
    maml.log_lrs.requires_grad_(False)
    for p in maml.log_lrs.values():
        p.fill_(-30.0)  # no adaptation: the prediction is the unadapted model's
    unadapted = maml.model(tasks.query_items[:, 0])[:, -1] * 5
    torch.testing.assert_close(maml.predict(tasks), unadapted.detach())


def test_prediction_skips_the_intermediate_query_losses_exactly(small_tasks):
    """`predict` computes the query only after the last inner step: the same predictions, to
    the bit, as adapting with the query after every step, and the same last-step loss."""
    n_items, tasks = small_tasks
    maml = _maml(n_items, TaskStateLoss())
    every, pred_every = maml.adapt(tasks, create_graph=False)
    last, pred_last = maml.adapt(tasks, create_graph=False, every_step=False)
    assert every.shape == (len(tasks), maml.config.inner_steps) and last.shape == (len(tasks), 1)
    assert torch.equal(last[:, 0], every[:, -1]) and torch.equal(pred_last, pred_every)
    assert torch.equal(maml.predict(tasks), pred_every[:, 0].detach())


@pytest.mark.parametrize("backbone", ["gru4rec", "narm", "sasrec", "bert4rec"])
def test_vectorised_equals_loop_on_every_backbone(small_tasks, backbone):
    """The four shared backbones under vmap (the GRUs step by step), second order, padding
    trimmed vs the full-length loop."""
    from coldrec_lib.experiments.melo import make_backbone
    from coldrec_lib.models.melo import MELOConfig, make_meta_learner
    n_items, tasks = small_tasks
    torch.manual_seed(0)
    maml = make_meta_learner(make_backbone(backbone, n_items, 8, 8), MELOConfig(loss="lstm"))
    maml.eval()  # no dropout: both paths compute the same numbers
    assert maml.support_chunks(tasks.support_items)[0][2] <= 8
    vectorised, _ = maml.adapt(tasks, create_graph=True)
    torch.testing.assert_close(vectorised, query_losses_loop(maml, tasks), atol=1e-5, rtol=1e-5)

"""Unit tests of the loss-value dataflow: model/dataflow.py, uses.py, reductions.py,
batches.py and averages.py."""

from __future__ import annotations

import textwrap

import libcst as cst
import pytest

from trainlint.model import TrainingModel
from trainlint.model.dataflow.averages import Divisor, counters, divisor_kind, finalizers
from trainlint.model.dataflow.batches import batching, rows_of
from trainlint.model.dataflow.graph import Holds, own_nodes
from trainlint.model.dataflow.lossflow import Reduction
from trainlint.model.syntax.nodes import dotted, literal
from trainlint.model.syntax.scopes import Scope

HEADER = """\
import numpy as np
import tensorflow as tf
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
"""


def build(source: str) -> TrainingModel:
    return TrainingModel.from_source(HEADER + textwrap.dedent(source))


def probe(model: TrainingModel, name: str) -> tuple[cst.BaseExpression, Scope, int | None]:
    """The value assigned to ``name`` (its last assignment), its scope and its order."""
    found = None
    for scope in model.scopes:
        for node in own_nodes(scope.node):
            if isinstance(node, cst.Assign) and dotted(node.targets[0].target) == name:
                found = (node.value, scope, model.order_of(node))
    assert found is not None, name
    return found


def holds(model: TrainingModel, name: str) -> Holds:
    value, scope, order = probe(model, name)
    return model.dataflow.holds(value, scope, order)


def reduction(model: TrainingModel, name: str) -> Reduction:
    value, scope, order = probe(model, name)
    return model.dataflow.reduction(value, scope, order)


def loop_over(model: TrainingModel, iterable: str):
    for loop in model.loops:
        if model.module.code_for_node(loop.node.iter).strip() == iterable:
            return loop
    raise AssertionError(iterable)


# ---------------------------------------------------------------------- graph tensors
TRAINING = """
model = nn.Linear(4, 2)
criterion = nn.CrossEntropyLoss()

def helper_loss(x, y):
    return criterion(model(x), y)

def helper_pair(x, y):
    out = model(x)
    return criterion(out, y), out.argmax(1)

for x, y in loader:
    logits = model(x)
    loss = criterion(logits, y)
    outputs = model(x)
    p_criterion = loss
    p_model = logits
    p_hf_loss = outputs.loss
    p_subscript_loss = outputs["loss"]
    p_arith = 0.5 * loss + logits.sum()
    p_mean = loss.mean()
    p_functional = F.mse_loss(logits, y)
    p_helper = helper_loss(x, y)
    first, second = helper_pair(x, y)
    p_unpacked_loss = first
    p_unpacked_index = second
    p_item = loss.item()
    p_float = float(loss)
    p_detach = loss.detach()
    p_numpy = loss.detach().cpu().numpy()
    p_tolist = logits.tolist()
    p_data = loss.data
    value = loss.item()
    doubled = value * 2
    p_transitive = doubled
    p_compare = logits.argmax(1) == y
    p_indices = torch.max(logits, 1)[1]
    p_values = torch.max(logits, 1)[0]
    p_new_tensor = torch.tensor(0.0)
    p_numpy_fn = np.mean(p_numpy)
    loss = loss.item()
    p_after_conversion = loss
    p_unknown = some_function(x)
"""


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("p_criterion", Holds.GRAPH),
        ("p_model", Holds.GRAPH),
        ("p_hf_loss", Holds.GRAPH),
        ("p_subscript_loss", Holds.GRAPH),
        ("p_arith", Holds.GRAPH),
        ("p_mean", Holds.GRAPH),
        ("p_functional", Holds.GRAPH),
        ("p_helper", Holds.GRAPH),
        ("p_unpacked_loss", Holds.GRAPH),
        ("p_unpacked_index", Holds.TENSOR),
        ("p_item", Holds.NUMBER),
        ("p_float", Holds.NUMBER),
        ("p_detach", Holds.TENSOR),
        ("p_numpy", Holds.NUMBER),
        ("p_tolist", Holds.NUMBER),
        ("p_data", Holds.TENSOR),
        ("p_transitive", Holds.NUMBER),
        ("p_compare", Holds.TENSOR),
        ("p_indices", Holds.TENSOR),
        ("p_values", Holds.GRAPH),
        ("p_new_tensor", Holds.TENSOR),
        ("p_numpy_fn", Holds.NUMBER),
        ("p_after_conversion", Holds.NUMBER),
        ("p_unknown", Holds.UNKNOWN),
    ],
)
def test_holds(name: str, expected: Holds) -> None:
    assert holds(build(TRAINING), name) is expected


def test_graph_origin_is_the_loss_call() -> None:
    model = build(TRAINING)
    value, scope, order = probe(model, "p_criterion")
    origin = model.dataflow.fact(value, scope, order).origin
    assert model.module.code_for_node(origin) == "criterion(logits, y)"


# ---------------------------------------------------------------------- grad regions
def test_grad_disabled_regions() -> None:
    model = build(
        """
        @torch.no_grad()
        def evaluate(model, loader):
            for x, y in loader:
                a = model(x)

        def test(model, loader):
            with torch.inference_mode():
                for x, y in loader:
                    b = model(x)
            with torch.set_grad_enabled(False):
                c = model(x)
            d = model(x)
        """
    )
    flow = model.dataflow
    states = {}
    for scope in model.scopes:
        for node in own_nodes(scope.node):
            if isinstance(node, cst.Assign):
                states[dotted(node.targets[0].target)] = flow.grad_disabled(node)
    assert states == {"a": True, "b": True, "c": True, "d": False}


# ---------------------------------------------------------------------- uses of accumulators
USES = """
def multitask(model, batch, criteria, optimizer):
    total = 0
    for name, criterion in criteria.items():
        total += criterion(model(batch), batch[name])
    scaled = total / len(criteria)
    scaler.scale(scaled).backward()

def accelerate(model, batches):
    acc = 0
    for batch in batches:
        acc = acc + model(**batch).loss
    accelerator.backward(acc)

def residual(blocks, x):
    for block in blocks:
        x = x + block(x)
    return x

def feeds(model, x, steps):
    h = 0
    for _ in range(steps):
        h = h + model(x)
        out = model(h)

def report(model, loader):
    running = 0
    for x, y in loader:
        running += model(x).sum()
    print(running)
"""


@pytest.mark.parametrize(
    ("function", "name", "backward", "model_input", "returned"),
    [
        ("multitask", "total", True, False, False),
        ("accelerate", "acc", True, False, False),
        ("residual", "x", False, False, True),
        ("feeds", "h", False, True, False),
        ("report", "running", False, False, False),
    ],
)
def test_uses(function, name, backward, model_input, returned) -> None:
    model = build(USES)
    scope = next(s for s in model.scopes if s.name == function)
    uses = model.dataflow.uses(name, scope)
    assert (uses.backward, uses.model_input, uses.returned) == (backward, model_input, returned)


def test_attribute_accumulator_backpropagated_in_another_method() -> None:
    model = build(
        """
        class Agent:
            def observe(self, batch):
                for x in batch:
                    self.pending += self.policy(x).sum()

            def learn(self):
                self.pending.backward()
        """
    )
    scope = next(s for s in model.scopes if s.name == "Agent.observe")
    assert model.dataflow.uses("self.pending", scope).backward


# ---------------------------------------------------------------------- reductions
REDUCTIONS = """
mean_ce = nn.CrossEntropyLoss()
sum_ce = nn.CrossEntropyLoss(reduction="sum")
none_mse = nn.MSELoss(reduction="none")
legacy = nn.MSELoss(size_average=False)
token_ce = nn.CrossEntropyLoss(ignore_index=-100)
keras_obj = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
keras_sum = tf.keras.losses.MeanSquaredError(reduction=tf.keras.losses.Reduction.SUM)
model = nn.Linear(4, 2)

def evaluate(criterion, x, y):
    r_param = criterion(model(x), y)

for x, y in loader:
    out = model(x)
    pred = out.argmax(1)
    r_default = mean_ce(out, y)
    r_sum = sum_ce(out, y)
    r_none = none_mse(out, y)
    r_legacy = legacy(out, y)
    r_functional = F.cross_entropy(out, y)
    r_functional_sum = F.nll_loss(out, y, reduction="sum")
    r_item = mean_ce(out, y).item()
    r_weighted = mean_ce(out, y).item() * x.size(0)
    r_scaled = mean_ce(out, y) / 4
    r_accuracy = (pred == y).float().mean()
    r_correct = (pred == y).sum().item()
    r_batch_accuracy = (pred == y).sum().item() / len(y)
    r_hf = model(x).loss
    r_keras_obj = keras_obj(y, out)
    r_keras_sum = keras_sum(y, out)
    r_keras_fn = tf.keras.losses.sparse_categorical_crossentropy(y, out)
    r_tf_mean = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=out))
    r_tf_axis = tf.reduce_mean(out, axis=1)
    r_two_means = mean_ce(out, y) + F.mse_loss(out, out)
    r_mixed = mean_ce(out, y) + sum_ce(out, y)
    r_token = token_ce(out, y)

evaluate(nn.BCELoss(reduction="sum"), 1, 2)
"""


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("r_default", Reduction.MEAN),
        ("r_sum", Reduction.SUM),
        ("r_none", Reduction.NONE),
        ("r_legacy", Reduction.SUM),
        ("r_functional", Reduction.MEAN),
        ("r_functional_sum", Reduction.SUM),
        ("r_item", Reduction.MEAN),
        ("r_weighted", Reduction.SUM),
        ("r_scaled", Reduction.MEAN),
        ("r_accuracy", Reduction.MEAN),
        ("r_correct", Reduction.SUM),
        ("r_batch_accuracy", Reduction.MEAN),
        ("r_hf", Reduction.MEAN),
        ("r_keras_obj", Reduction.MEAN),
        ("r_keras_sum", Reduction.SUM),
        ("r_keras_fn", Reduction.NONE),
        ("r_tf_mean", Reduction.MEAN),
        ("r_tf_axis", Reduction.NONE),
        ("r_two_means", Reduction.MEAN),
        ("r_mixed", Reduction.UNKNOWN),
        ("r_param", Reduction.SUM),
    ],
)
def test_reduction(name: str, expected: Reduction) -> None:
    assert reduction(build(REDUCTIONS), name) is expected


def test_criterion_ignore_index() -> None:
    model = build(REDUCTIONS)
    site = next(s for s in model.calls if s.dotted == "token_ce")
    info = model.dataflow.criterion_of_call(site.node, site.scope)
    assert info is not None
    assert info.reduction is Reduction.MEAN
    assert literal(info.ignore_index, None) == -100
    assert model.dataflow.criterion_of_call(cst.parse_expression("print(1)"), site.scope) is None


# ---------------------------------------------------------------------- sizes and batching
def test_rows_of_literal_factories() -> None:
    model = build(
        """
        a = torch.randn(100, 4)
        b = np.zeros((50, 3))
        c = TensorDataset(torch.rand(640, 8), torch.ones(640))
        d = torch.randn(n, 4)
        e = torch.arange(30).float()
        """
    )
    flow = model.dataflow
    found = {}
    for name in "abcde":
        value, scope, _ = probe(model, name)
        found[name] = rows_of(flow, value, scope)
    assert found == {"a": 100, "b": 50, "c": 640, "d": None, "e": 30}


BATCHING = """
X = torch.randn(100, 3)
even = DataLoader(TensorDataset(torch.randn(640, 3)), batch_size=64)
uneven = DataLoader(TensorDataset(torch.randn(650, 3)), batch_size=64)
dropping = DataLoader(dataset, batch_size=32, drop_last=True)
default = DataLoader(dataset, batch_size=32)
single = DataLoader(dataset)
tf_plain = tf.data.Dataset.from_tensor_slices((features, labels)).batch(32)
tf_drop = tf.data.Dataset.from_tensor_slices(features).batch(32, drop_remainder=True)
tf_stream = tf.data.Dataset.from_tensor_slices(features).repeat().batch(32)

def evaluate(loader):
    for batch in loader:
        pass

for i in range(0, 100, 10):
    pass
for i in range(0, len(X), 32):
    pass
for batch in even:
    pass
for batch in uneven:
    pass
for batch in dropping:
    pass
for step, batch in enumerate(tqdm(default), 1):
    pass
for batch in single:
    pass
for batch in tf_plain:
    pass
for batch in tf_drop:
    pass
for batch in tf_stream.take(10):
    pass
for item in some_list:
    pass

evaluate(dropping)
"""


@pytest.mark.parametrize(
    ("iterable", "kind", "full"),
    [
        ("range(0, 100, 10)", "range", True),
        ("range(0, len(X), 32)", "range", False),
        ("even", "loader", True),
        ("uneven", "loader", False),
        ("dropping", "loader", True),
        ("enumerate(tqdm(default), 1)", "loader", False),
        ("single", "loader", True),
        ("tf_plain", "tf.data", False),
        ("tf_drop", "tf.data", True),
        ("tf_stream.take(10)", "tf.data", True),
        ("loader", "loader", True),
    ],
)
def test_batching(iterable: str, kind: str, full: bool) -> None:
    model = build(BATCHING)
    found = batching(model.dataflow, loop_over(model, iterable))
    assert found is not None
    assert (found.kind, found.full) == (kind, full)


def test_batching_details() -> None:
    model = build(BATCHING)
    flow = model.dataflow
    counted = batching(flow, loop_over(model, "enumerate(tqdm(default), 1)"))
    assert counted is not None and (counted.counter, counted.counter_start) == ("step", 1)
    assert counted.name == "default" and counted.dataset == "dataset"
    uneven = batching(flow, loop_over(model, "uneven"))
    assert uneven is not None and (uneven.samples, uneven.batch_size) == (650, 64)
    assert batching(flow, loop_over(model, "some_list")) is None


def test_a_factorys_drop_last_variable_is_read_where_the_loader_is_built() -> None:
    model = build(
        """
def get_data(dataset, flag):
    if flag == "pred":
        drop_last = False
    else:
        drop_last = True
    return dataset, DataLoader(dataset, batch_size=32, drop_last=drop_last)

def get_plain(dataset, flag):
    drop_last = flag == "train"
    return DataLoader(dataset, batch_size=32, drop_last=drop_last)

def run(dataset):
    _, val_loader = get_data(dataset, "val")
    for batch in val_loader:
        pass
    for batch in get_plain(dataset, "val"):
        pass
"""
    )
    flow = model.dataflow
    chosen = batching(flow, loop_over(model, "val_loader"))
    plain = batching(flow, loop_over(model, 'get_plain(dataset, "val")'))
    # True on some split: which one this is the caller's argument decides (not judged)
    assert chosen is not None and chosen.full
    assert plain is not None and not plain.full


# ---------------------------------------------------------------------- divisors and finalizers
FINALIZING = """
def evaluate(model, loader, criterion):
    total = 0.0
    per_sample = 0.0
    losses = []
    batches = 0
    seen = 0
    for i, (x, y) in enumerate(loader):
        loss = criterion(model(x), y).item()
        total += loss
        losses.append(loss)
        batches += 1
        seen += x.size(0)
    n_batches = len(loader)
    d_len_loader = len(loader)
    d_len_dataset = len(loader.dataset)
    d_list = len(list(loader))
    d_counter = batches
    d_samples = seen
    d_index = i + 1
    d_named = n_batches
    d_other = 7
    a = total / len(loader)
    total /= len(loader.dataset)
    b = np.mean(losses)
    c = sum(losses) / len(losses)
    total = 0.0
    ignored = total / len(loader)
"""


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("d_len_loader", Divisor.BATCHES),
        ("d_len_dataset", Divisor.SAMPLES),
        ("d_list", Divisor.BATCHES),
        ("d_counter", Divisor.BATCHES),
        ("d_samples", Divisor.SAMPLES),
        ("d_index", Divisor.BATCHES),
        ("d_named", Divisor.BATCHES),
        ("d_other", Divisor.OTHER),
    ],
)
def test_divisor_kind(name: str, expected: Divisor) -> None:
    model = build(FINALIZING)
    flow = model.dataflow
    loop = model.loops[0]
    batches = batching(flow, loop)
    assert batches is not None
    value, scope, _ = probe(model, name)
    counted = counters(flow, loop)
    assert counted == {"batches": Divisor.BATCHES, "seen": Divisor.SAMPLES}
    found = divisor_kind(flow, value, scope, batches, counted, frozenset({"losses"}))
    assert found is expected


def test_finalizers_stop_at_reset() -> None:
    model = build(FINALIZING)
    flow = model.dataflow
    loop = model.loops[0]
    code = model.module.code_for_node
    sums = [code(f.node).strip() for f in finalizers(flow, loop, "total", is_list=False)]
    assert sums == ["total / len(loader)", "total /= len(loader.dataset)"]
    means = [code(f.node).strip() for f in finalizers(flow, loop, "losses", is_list=True)]
    assert means == ["np.mean(losses)", "sum(losses) / len(losses)"]


def test_length_of_a_batched_tf_pipeline_counts_batches() -> None:
    model = build(
        """
        dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(64)
        train_set = load_samples()
        total = 0.0
        for x, y in dataset:
            total += tf.reduce_mean(model(x, training=False)).numpy()
        d_batches = len(dataset)
        d_samples = len(train_set)
        """
    )
    flow = model.dataflow
    loop = model.loops[0]
    batches = batching(flow, loop)
    assert batches is not None and batches.kind == "tf.data" and not batches.full
    for name, expected in (("d_batches", Divisor.BATCHES), ("d_samples", Divisor.SAMPLES)):
        value, scope, _ = probe(model, name)
        assert divisor_kind(flow, value, scope, batches, {}) is expected


def test_total_stored_on_an_attribute_and_backpropagated_elsewhere() -> None:
    model = build(
        """
        class Solver:
            def compute(self, outputs, target):
                total = 0
                for output in outputs:
                    total += self.criterion(output, target)
                self.loss = total

            def optimize(self):
                self.optimizer.zero_grad()
                self.loss.backward()
                self.optimizer.step()
        """
    )
    scope = next(s for s in model.scopes if s.name == "Solver.compute")
    assert model.dataflow.uses("total", scope).backward


def test_operand_arguments_map_a_helper_accumulation_back_to_the_callers_argument():
    model = build(
        """
        class Meter:
            def __init__(self):
                self.sum = 0.0

            def update(self, val, n=1):
                self.sum += val * n

        def add(total, value):
            return total + value

        meter = Meter()
        model = nn.Linear(2, 1)
        for x, y in DataLoader(TensorDataset(torch.zeros(4, 2), torch.zeros(4, 1))):
            loss = F.mse_loss(model(x), y)
            meter.update(loss, x.size(0))
        """
    )
    loop = model.loops[0]
    event = next(e for e in model.iteration(loop) if e.kind.value == "accumulate")
    call = event.via[0]
    added = model.operand_arguments(event, call, model.module_scope)
    # ``val * n`` is made from both parameters: the loss and the batch size
    assert [model.text_of(a) for a in added] == ["loss", "x.size(0)"]
    other = next(s.node for s in model.calls if dotted(s.node.func) == "F.mse_loss")
    assert model.operand_arguments(event, other, model.module_scope) == []  # not the helper's

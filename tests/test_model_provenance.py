"""Unit tests of provenance (where a value was made), same-file objects and evaluation regions:
model/dataflow/provenance.py, facts.py, calls.py, objects.py and model/loops/regions.py."""

from __future__ import annotations

import textwrap

import libcst as cst
import pytest

from trainlint.model import EventKind, TrainingModel
from trainlint.model.dataflow.batches import batching
from trainlint.model.dataflow.graph import Holds
from trainlint.model.dataflow.objects import (
    instance_class,
    meter_summary,
    meter_updates,
)
from trainlint.model.dataflow.provenance import parameter_update
from trainlint.model.loops.loop_purpose import evaluates, trains
from trainlint.model.syntax.nodes import dotted
from trainlint.model.syntax.scopes import Scope
from trainlint.rule import Severity, load_registry

HEADER = """\
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader
"""


def build(source: str) -> TrainingModel:
    return TrainingModel.from_source(HEADER + textwrap.dedent(source))


def scope_named(model: TrainingModel, name: str) -> Scope:
    return next(s for s in model.scopes if s.name == name)


def assigned(model: TrainingModel, name: str) -> tuple[cst.BaseExpression, Scope, int | None]:
    """The value of ``name``'s last plain assignment, its scope and its order."""
    found = None
    for scope in model.scopes:
        for binding in scope.bindings.get(name, []):
            if binding.value is not None and not binding.augmented:
                found = (binding.value, scope, binding.order)
    assert found is not None, name
    return found


def accumulated(model: TrainingModel, target: str, function: str | None = None) -> cst.AugAssign:
    root = scope_named(model, function).node if function else model.module
    for node in _walk(root):
        if isinstance(node, cst.AugAssign) and dotted(node.target) == target:
            return node
    raise AssertionError(target)


def _walk(node: cst.CSTNode):
    yield node
    for child in node.children:
        yield from _walk(child)


def holds_of_operand(model: TrainingModel, target: str, function: str) -> Holds:
    statement = accumulated(model, target, function)
    scope = scope_named(model, function)
    return model.dataflow.holds(statement.value, scope, model.order_of(statement))


# ---------------------------------------------------------------------- provenance
GRAD_OFF = """
def evaluate(model, loader):
    losses = 0.0
    for batch in loader:
        with torch.no_grad():
            outputs = model(**batch)
        losses += outputs.loss.float()
    return losses

def evaluate_off(model, loader):
    total = 0.0
    for x, y in loader:
        with torch.set_grad_enabled(False):
            logits = model(x)
        total += logits.sum()
    return total

@torch.inference_mode()
def predict(model, x):
    return model(x)

def helper_in_block(model, x):
    with torch.no_grad():
        return model(x)

def train(model, loader, opt):
    total = 0.0
    other = 0.0
    for x, y in loader:
        scores = predict(model, x)
        total += scores.sum()
        more = helper_in_block(model, x)
        other += more.mean()
        out = model(x)
        graph = out.sum()
"""


@pytest.mark.parametrize(
    ("target", "function", "expected"),
    [
        ("losses", "evaluate", Holds.TENSOR),  # made in a closed no_grad block
        ("total", "evaluate_off", Holds.TENSOR),  # set_grad_enabled(False)
        ("total", "train", Holds.TENSOR),  # returned by an @inference_mode() helper
        ("other", "train", Holds.TENSOR),  # returned inside a no_grad block
    ],
)
def test_values_made_without_gradients_carry_no_graph(target, function, expected) -> None:
    model = build(GRAD_OFF)
    assert holds_of_operand(model, target, function) is expected


def test_no_grad_provenance_is_marked_and_ordinary_forward_is_graph() -> None:
    model = build(GRAD_OFF)
    statement = accumulated(model, "losses")
    fact = model.dataflow.fact(
        statement.value, scope_named(model, "evaluate"), model.order_of(statement)
    )
    assert fact.no_grad and fact.origin is not None
    value, scope, order = assigned(model, "graph")
    assert model.dataflow.holds(value, scope, order) is Holds.GRAPH


PRODUCERS = """
def run(model, engine, tokenizer, pipe, loader, make_thing):
    for x, y in loader:
        ids = model(x)
        micro = engine.train_micro_batch_size_per_gpu()
        times = pipe.model.model_times()
        first = times[0]
        text = tokenizer.decode(ids[0])
        stripped = text.strip()
        joined = "pred: " + str(ids)
        formatted = f"{ids}"
        params = model.num_parameters()
        forward = model.forward(x)
        lossy = model.compute_loss(x, y)
        unknown = make_thing(x)
        unknown.backward()
        opaque = make_thing(y)
"""


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ids", Holds.GRAPH),
        ("micro", Holds.UNKNOWN),  # an int, whatever the engine is
        ("times", Holds.UNKNOWN),
        ("first", Holds.UNKNOWN),
        ("text", Holds.NUMBER),  # strings carry no graph
        ("stripped", Holds.NUMBER),
        ("joined", Holds.NUMBER),
        ("formatted", Holds.NUMBER),
        ("params", Holds.UNKNOWN),
        ("forward", Holds.GRAPH),
        ("lossy", Holds.GRAPH),
    ],
)
def test_what_makes_a_graph_tensor(name: str, expected: Holds) -> None:
    model = build(PRODUCERS)
    value, scope, order = assigned(model, name)
    assert model.dataflow.holds(value, scope, order) is expected


FROZEN = """
import torchvision

def run(loader):
    generator = nn.Linear(8, 8)
    extractor = torchvision.models.resnet18()
    extractor.requires_grad_(False)
    partly = torchvision.models.resnet18()
    partly.requires_grad_(False)
    partly.fc.requires_grad_(True)
    for x in loader:
        plain = extractor(x)
        through = extractor(generator(x))
        tuned = partly(x)
"""


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("plain", Holds.TENSOR),  # frozen, on data: no graph
        ("through", Holds.GRAPH),  # frozen, on a generator's output: its graph
        ("tuned", Holds.GRAPH),  # the head is unfrozen again
    ],
)
def test_a_frozen_model_on_data_makes_no_graph(name: str, expected: Holds) -> None:
    model = build(FROZEN)
    value, scope, order = assigned(model, name)
    assert model.dataflow.holds(value, scope, order) is expected


DETACHED = """
def run(loader, criterion):
    net = nn.Linear(8, 1)
    for x, y in loader:
        out = net(x)
        both = criterion(out.detach().cpu(), y.cpu())
        target_only = criterion(out, y.detach())
        functional = F.l1_loss(out.detach(), y)
        fresh_target = F.smooth_l1_loss(out, torch.tensor([1.0]))
"""


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("both", Holds.TENSOR),
        ("target_only", Holds.GRAPH),
        ("functional", Holds.TENSOR),
        ("fresh_target", Holds.GRAPH),  # a factory tensor is not a detached prediction
    ],
)
def test_a_loss_of_a_detached_prediction_makes_no_graph(name: str, expected: Holds) -> None:
    model = build(DETACHED)
    value, scope, order = assigned(model, name)
    assert model.dataflow.holds(value, scope, order) is expected


def test_a_value_passed_to_backward_is_a_graph_tensor() -> None:
    model = build(PRODUCERS)
    run = scope_named(model, "run")
    value, scope, order = assigned(model, "unknown")
    assert model.dataflow.holds(value, scope, order) is Holds.UNKNOWN  # the call itself
    assert model.dataflow.holds(cst.parse_expression("unknown"), run) is Holds.GRAPH  # the name
    assert model.dataflow.holds(cst.parse_expression("opaque"), run) is Holds.UNKNOWN


def test_the_receiver_of_engine_backward_is_not_back_propagated() -> None:
    model = build(
        """
        def train(engine, loader, make_config):
            for batch in loader:
                loss = engine(batch)
                engine.backward(loss)
                engine.step()
                config = make_config(engine)
                layers = engine.config.layers
        """
    )
    value, scope, order = assigned(model, "layers")
    assert model.dataflow.holds(value, scope, order) is Holds.UNKNOWN
    train = scope_named(model, "train")
    assert model.dataflow.holds(cst.parse_expression("loss"), train) is Holds.GRAPH


def test_self_call_inside_a_module_is_a_forward() -> None:
    model = build(
        """
        class Net(nn.Module):
            def forward(self, x):
                return x * 2

            def score(self, x):
                out = self(x)
                return out
        """
    )
    value, scope, order = assigned(model, "out")
    assert model.dataflow.holds(value, scope, order) is Holds.GRAPH


PARAMETER_UPDATES = """
def sgd(model, params, lr, loss, loader):
    running = 0.0
    for x in loader:
        with torch.no_grad():
            model.w -= lr * model.w.grad
            for p in model.parameters():
                p -= lr * p.grad
            for q in params:
                q += -lr * q.grad
            model.layer.weight.data += 0.1
        running += loss
"""


@pytest.mark.parametrize(
    ("target", "expected"),
    [("model.w", True), ("p", True), ("q", True), ("model.layer.weight.data", True)],
)
def test_in_place_parameter_updates_are_not_accumulators(target: str, expected: bool) -> None:
    model = build(PARAMETER_UPDATES)
    scope = scope_named(model, "sgd")
    assert parameter_update(model.dataflow, accumulated(model, target), scope) is expected
    assert not parameter_update(model.dataflow, accumulated(model, "running"), scope)


# ---------------------------------------------------------------------- objects
METERS = """
class AverageMeter:
    def __init__(self, name=""):
        self.name = name
        self.reset()

    def reset(self):
        self.sum = 0
        self.count = 0
        self.avg = 0

    def update(self, val, n=1):
        self.sum += val * n
        self.count += n
        self.avg = self.sum / self.count


class BatchMeter:
    def __init__(self):
        self.total = 0.0
        self.steps = 0

    def update(self, value):
        self.total += value
        self.steps += 1

    def average(self):
        return self.total / max(self.steps, 1)


def add_losses(totals, loss_dict):
    for key, value in loss_dict.items():
        totals[key] += value


def train(model, loader, optimizer, criterion, meter: BatchMeter):
    losses = AverageMeter("loss")
    plain = AverageMeter()
    totals = {"ce": 0.0}
    for images, target in loader:
        loss = criterion(model(images), target)
        loss.backward()
        optimizer.step()
        losses.update(loss, images.size(0))
        plain.update(loss.item())
        meter.update(loss.item())
        add_losses(totals, {"ce": loss})
    return losses.avg, plain.avg, meter.average()
"""


def test_instances_of_same_file_classes_resolve() -> None:
    model = build(METERS)
    train = scope_named(model, "train")
    assert instance_class(model, cst.parse_expression("losses"), train).name == "AverageMeter"
    assert instance_class(model, cst.parse_expression("meter"), train).name == "BatchMeter"
    assert instance_class(model, cst.parse_expression("totals"), train) is None


def test_method_calls_on_instances_are_followed() -> None:
    model = build(METERS)
    loop = model.loops[-1]
    accumulations = {
        e.subject: e for e in model.iteration(loop) if e.kind is EventKind.ACCUMULATE and e.via
    }
    assert {"losses.sum", "losses.count", "plain.sum", "meter.total", "totals"} <= set(
        accumulations
    )
    flow = model.dataflow
    graph = accumulations["losses.sum"]
    number = accumulations["plain.sum"]
    # the same ``self.sum += val * n`` seen from two calls: context-sensitive
    assert flow.fact_through(graph.operand, graph.scope, None, graph.via).holds is Holds.GRAPH
    assert flow.fact_through(number.operand, number.scope, None, number.via).holds is not (
        Holds.GRAPH
    )
    added = accumulations["totals"]
    assert flow.fact_through(added.operand, added.scope, None, added.via).holds is Holds.GRAPH


def test_meter_summaries_tell_sample_from_batch_weighting() -> None:
    model = build(METERS)
    average = meter_summary(model, model.classes["AverageMeter"])
    assert average is not None
    assert (average.total, average.count, average.weight_param) == ("sum", "count", "n")
    assert "avg" in average.averages
    batch = meter_summary(model, model.classes["BatchMeter"])
    assert batch is not None and batch.weight_param is None and "average" in batch.averages
    updates = {u.receiver: u.weighted for u in meter_updates(model, model.loops[-1])}
    assert updates == {"losses": True, "plain": False, "meter": False}


# ---------------------------------------------------------------------- regions and loaders
REGIONS = """
def train_epoch(model, loader, optimizer, criterion):
    for x, y in loader:
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()

def validate(model, loader):
    for x, y in loader:
        model(x)

def score_all(model, loader):
    model.eval()
    for x, y in loader:
        model(x)

def run(model, val_loader):
    for x, y in val_loader:
        model(x)

def quiet(model, loader):
    with torch.no_grad():
        for x, y in loader:
            model(x)

def loop_only(model, loader):
    for x, y in loader:
        model(x)

def set_eval(*nets):
    for net in nets:
        net.eval()

def set_mode(net, training):
    net.train(training)

def after_helper(model, loader):
    set_eval(model)
    for x, y in loader:
        model(x)

def helper_then_train(model, loader):
    set_eval(model)
    model.train()
    for x, y in loader:
        model(x)

def direct_then_helper_train(model, loader):
    model.eval()
    set_mode(model, True)
    for x, y in loader:
        model(x)
"""


@pytest.mark.parametrize(
    ("function", "training", "evaluation"),
    [
        ("train_epoch", True, False),
        ("validate", False, True),
        ("score_all", False, True),
        ("run", False, True),
        ("quiet", False, True),
        ("loop_only", False, False),
        ("after_helper", False, True),  # a same-file helper's switch counts like a direct one
        ("helper_then_train", False, False),
        ("direct_then_helper_train", False, False),
    ],
)
def test_evaluation_regions(function: str, training: bool, evaluation: bool) -> None:
    model = build(REGIONS)
    loop = next(lp for lp in model.loops if lp.scope.name == function)
    assert trains(model, loop) is training
    assert evaluates(model, loop) is evaluation


LOADERS = """
def get_dataloader_kwargs(batch_size):
    return {"batch_size": batch_size, "drop_last": True, "num_workers": 4}

def with_helper(dataset):
    for x in DataLoader(dataset, **get_dataloader_kwargs(32)):
        pass

def with_dict(dataset):
    options = dict(batch_size=8, shuffle=True)
    for x in DataLoader(dataset, **options):
        pass

def with_unknown(dataset, options):
    for x in DataLoader(dataset, **options):
        pass

def from_parameter(loader):
    for x in loader:
        pass
"""


@pytest.mark.parametrize(
    ("function", "full", "visible"),
    [
        ("with_helper", True, True),  # drop_last=True set by a same-file helper
        ("with_dict", False, True),  # visibly built without drop_last
        ("with_unknown", False, False),
        ("from_parameter", False, False),
    ],
)
def test_loader_construction_through_kwargs(function: str, full: bool, visible: bool) -> None:
    model = build(LOADERS)
    loop = next(lp for lp in model.loops if lp.scope.name == function)
    batches = batching(model.dataflow, loop)
    assert batches is not None
    assert (batches.full, batches.visible) == (full, visible)


# ---------------------------------------------------------------------- TL202's confidence
CONFIDENCE = """
def train_epoch(model, loader, optimizer, criterion):
    total = 0.0
    for x, y in loader:
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        total += loss.item()
    return total / len(loader)

def validate(model, loader, criterion):
    total = 0.0
    with torch.no_grad():
        for x, y in loader:
            total += criterion(model(x), y).item()
    return total / len(loader)

def measure(model, loader, criterion):
    total = 0.0
    for x, y in loader:
        total += criterion(model(x), y).item()
    return total / len(loader)

def measure_built(model, dataset, criterion):
    loader = DataLoader(dataset, batch_size=10)
    total = 0.0
    for x, y in loader:
        total += criterion(model(x), y).item()
    return total / len(loader)

def per_sample(model, loader, criterion):
    total = 0.0
    with torch.no_grad():
        for x, y in loader:
            total += criterion(model(x), y).item()
    return total / len(loader.dataset)
"""


def test_tl202_confidence() -> None:
    model = build("criterion = nn.CrossEntropyLoss()\n" + textwrap.dedent(CONFIDENCE))
    rule = load_registry()["TL202"]
    found = {}
    for violation in rule().check(model):
        function = next(
            s.name
            for s in model.scopes
            if isinstance(s.node, cst.FunctionDef) and violation.node in set(_walk(s.node))
        )
        found[function] = violation.severity or rule.severity
    assert found == {
        "train_epoch": Severity.INFO,  # a training loss for a progress bar
        "validate": Severity.WARNING,  # evaluation picks checkpoints
        "measure": Severity.INFO,  # loader construction not visible
        "measure_built": Severity.WARNING,  # visibly built without drop_last
        "per_sample": Severity.ERROR,  # a sum of means over the number of samples
    }


# ---------------------------------------------------------------------- per-batch step methods
STEPS = """
class Trainer:
    def __init__(self, model, loader):
        self.model = model
        self.loader = loader
        self.optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def training_step(self, batch):
        self.optimizer.zero_grad()
        loss = self.model(batch).mean()
        loss.backward()
        self.optimizer.step()
        return loss

    def fit(self):
        for batch in self.loader:
            self.training_step(batch)


trainer = Trainer(torch.nn.Linear(2, 1), [torch.randn(4, 2)])
for batch in trainer.loader:
    trainer.training_step(batch)
"""


@pytest.mark.parametrize("where", ["Trainer.fit", "<module>"])
def test_step_methods_are_part_of_the_callers_iteration(where: str) -> None:
    model = build(STEPS)
    loop = next(
        lp
        for lp in model.loops
        if (lp.scope.name if not lp.scope.is_module else "<module>") == where
    )
    kinds = [e.kind for e in model.iteration(loop)]
    assert kinds.index(EventKind.ZERO_GRAD) < kinds.index(EventKind.BACKWARD)
    assert kinds.index(EventKind.BACKWARD) < kinds.index(EventKind.STEP)
    assert trains(model, loop)

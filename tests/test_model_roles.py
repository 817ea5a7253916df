"""Roles of bindings: optimizers, schedulers, scalers, models, criteria, loaders."""

from __future__ import annotations

from model_helpers import build, expr, scope

from trainlint.model import Role

SOURCE = """
import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from torch.optim.lr_scheduler import StepLR
from accelerate import Accelerator
import deepspeed


class Net(nn.Module):
    def forward(self, x):
        return x


class Child(Net):
    pass


def build_optimizer(model, lr):
    return torch.optim.AdamW(model.parameters(), lr=lr)


class Trainer:
    def __init__(self):
        self.model = Child()
        self.opt_g = torch.optim.Adam(self.model.parameters())
        self.scaler = torch.cuda.amp.GradScaler(enabled=True)

    def run(self):
        return self.opt_g


def main(train_data, optimizer, net: nn.Module, opt: torch.optim.Optimizer):
    model = Net()
    criterion = nn.CrossEntropyLoss(reduction="sum", ignore_index=-100)
    loader = DataLoader(train_data, batch_size=32, drop_last=True)
    sched = StepLR(optimizer, step_size=10)
    adam = build_optimizer(model, 1e-3)
    accelerator = Accelerator()
    prepared_model, prepared_opt = accelerator.prepare(model, adam)
    compiled = torch.compile(model)
    moved = model.to("cuda")
    engine, ds_opt, _, _ = deepspeed.initialize(model=model)
    return loader
"""


def test_roles_from_constructors_and_wrappers() -> None:
    model = build(SOURCE)
    main = scope(model, "main")
    expected = {
        "model": Role.MODEL,
        "criterion": Role.CRITERION,
        "loader": Role.LOADER,
        "sched": Role.SCHEDULER,
        "adam": Role.OPTIMIZER,
        "accelerator": Role.ACCELERATOR,
        "prepared_model": Role.MODEL,
        "prepared_opt": Role.OPTIMIZER,
        "compiled": Role.MODEL,
        "moved": Role.MODEL,
        "engine": Role.ENGINE,
    }
    for name, role in expected.items():
        assert model.role_of(expr(name), main) is role, name


def test_parameters_by_name_and_annotation() -> None:
    model = build(SOURCE)
    main = scope(model, "main")
    assert model.role_of(expr("optimizer"), main) is Role.OPTIMIZER
    assert model.role_of(expr("net"), main) is Role.MODEL
    assert model.role_of(expr("opt"), main) is Role.OPTIMIZER
    assert model.role_of(expr("train_data"), main) is None


def test_self_attributes_and_same_file_subclasses() -> None:
    model = build(SOURCE)
    run = scope(model, "Trainer.run")
    assert model.role_of(expr("self.opt_g"), run) is Role.OPTIMIZER
    assert model.role_of(expr("self.scaler"), run) is Role.SCALER
    value = model.value_of(expr("self.model"), run)
    assert value is not None and value.role is Role.MODEL and value.kind == "Child"


def test_constructor_options_are_kept() -> None:
    model = build(SOURCE)
    main = scope(model, "main")
    criterion = model.value_of(expr("criterion"), main)
    assert criterion is not None
    assert criterion.option("reduction") == "sum"
    assert criterion.option("ignore_index") == -100
    loader = model.value_of(expr("loader"), main)
    assert loader is not None and loader.option("drop_last") is True
    sched = model.value_of(expr("sched"), main)
    assert sched is not None and sched.short_kind == "StepLR"


def test_callee_resolution() -> None:
    model = build(SOURCE)
    main = scope(model, "main")
    call = next(site for site in model.calls if site.dotted == "build_optimizer")
    callee = model.callee(call.node, main)
    assert callee is not None and callee.name == "build_optimizer"
    assert model.argument_renames(call.node, callee) == {"lr": None}


def test_framework_managed_classes() -> None:
    model = build(
        """
        import lightning as L
        from transformers import Trainer

        class AutoModule(L.LightningModule):
            def training_step(self, batch, idx):
                return self.loss(batch)

        class ManualModule(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.automatic_optimization = False

            def training_step(self, batch, idx):
                return None

        class MyTrainer(Trainer):
            def compute_loss(self, model, inputs):
                return model(**inputs).loss
        """
    )
    assert model.is_framework_managed(scope(model, "AutoModule.training_step"))
    assert not model.is_framework_managed(scope(model, "ManualModule.training_step"))
    assert model.is_framework_managed(scope(model, "MyTrainer.compute_loss"))


def test_a_function_sees_the_globals_bound_before_the_module_first_calls_it() -> None:
    model = build(
        """
import torch
criterion = torch.nn.CrossEntropyLoss()
criterion = torch.nn.MSELoss()

def step(x):
    return criterion(x)

step(1)
criterion = torch.nn.BCELoss()

def never_called(x):
    return criterion(x)
"""
    )
    functions = model.module_scope.functions
    called = model.value_of(expr("criterion"), functions["step"])
    uncalled = model.value_of(expr("criterion"), functions["never_called"])
    assert called is not None and called.short_kind == "MSELoss"
    assert uncalled is not None and uncalled.short_kind == "BCELoss"


def test_an_attribute_of_an_accelerator_or_optimizer_is_no_role_by_its_name() -> None:
    model = build(
        """
        from accelerate import Accelerator
        import torch

        accelerator = Accelerator()
        optimizer = torch.optim.SGD(params, lr=0.1)
        a = accelerator.save_model
        b = optimizer.model_groups
        c = trainer.model
        """
    )
    module = model.module_scope
    assert model.value_of(expr("accelerator.save_model"), module) is None
    assert model.value_of(expr("optimizer.model_groups"), module) is None
    found = model.value_of(expr("trainer.model"), module)
    assert found is not None and found.role is Role.MODEL  # an unknown owner: still by name


def test_relatively_imported_names_get_no_role_from_their_name() -> None:
    model = build(
        """
from .modeling_utils import unwrap_model
from helpers import build_model

model = unwrap_model(net)
"""
    )
    module = model.module_scope
    # a project function or class, relative or absolute import alike: no role by name
    assert model.value_of(expr("unwrap_model"), module) is None
    assert model.value_of(expr("build_model"), module) is None
    assert model.role_of(expr("model"), module) is Role.MODEL  # the bound name still reads

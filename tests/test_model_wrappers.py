"""Roles through wrappers (slot by slot), bound-method aliases, isinstance checks, old names."""

from __future__ import annotations

import libcst as cst
from model_helpers import build, expr, scope

from trainlint.model import EventKind, Role
from trainlint.model.syntax.nodes import descendants

WRAPPERS = """
import deepspeed
import torch
import torch.nn as nn
from apex import amp
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
from torch.nn.parallel import DistributedDataParallel as DDP


def main(args, dataset, fabric, accelerator):
    net = nn.Linear(4, 4)
    sgd = torch.optim.SGD(net.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.OneCycleLR(sgd, max_lr=0.1, total_steps=100)
    train_dl = torch.utils.data.DataLoader(dataset, batch_size=8)
    val_dl = torch.utils.data.DataLoader(dataset, batch_size=8)
    amp_net, amp_opt = amp.initialize(net, sgd, opt_level="O1")
    acc_net, acc_opt, acc_dl, acc_sched = accelerator.prepare(net, sgd, train_dl, sched)
    fab_net, fab_opt = fabric.setup(net, sgd)
    fab_train, fab_val = fabric.setup_dataloaders(train_dl, val_dl)
    ddp = DDP(net, device_ids=[0])
    fsdp = FSDP(module=net)
    compiled = torch.compile(ddp)
    engine, ds_opt, ds_loader, ds_sched = deepspeed.initialize(
        args=args, model=net, optimizer=sgd, training_data=dataset, lr_scheduler=sched
    )
    engine2, built_opt, third, fourth = deepspeed.initialize(args=args, model=net)
    engine3, slot1, slot2, slot3 = deepspeed.initialize(args, net, sgd, None, dataset, sched)
    first, second = amp.initialize(models=net, optimizers=sgd)
"""


def test_tuple_wrappers_map_roles_slot_by_slot() -> None:
    model = build(WRAPPERS)
    main = scope(model, "main")
    expected = {
        "amp_net": Role.MODEL,
        "amp_opt": Role.OPTIMIZER,  # not the first argument's role
        "acc_net": Role.MODEL,
        "acc_opt": Role.OPTIMIZER,
        "acc_dl": Role.LOADER,
        "acc_sched": Role.SCHEDULER,
        "fab_net": Role.MODEL,
        "fab_opt": Role.OPTIMIZER,
        "fab_train": Role.LOADER,
        "fab_val": Role.LOADER,
        "ddp": Role.MODEL,
        "fsdp": Role.MODEL,
        "compiled": Role.MODEL,
        "engine": Role.ENGINE,
        "ds_opt": Role.OPTIMIZER,
        "ds_loader": Role.LOADER,
        "ds_sched": Role.SCHEDULER,
        "engine2": Role.ENGINE,
        "built_opt": Role.OPTIMIZER,  # built by DeepSpeed from its config
        "third": None,  # no training_data: DeepSpeed returns None
        "fourth": None,
        "slot1": Role.OPTIMIZER,  # positional arguments of deepspeed.initialize
        "slot2": Role.LOADER,
        "slot3": Role.SCHEDULER,
        "first": Role.MODEL,  # amp.initialize(models=..., optimizers=...)
        "second": Role.OPTIMIZER,
    }
    assert {name: model.role_of(expr(name), main) for name in expected} == expected


def test_wrapped_values_keep_their_producer() -> None:
    model = build(WRAPPERS)
    main = scope(model, "main")
    amp_opt = model.value_of(expr("amp_opt"), main)
    assert amp_opt is not None and amp_opt.kind == "torch.optim.SGD"
    ds_sched = model.value_of(expr("ds_sched"), main)
    assert ds_sched is not None and ds_sched.kind == "torch.optim.lr_scheduler.OneCycleLR"
    fab_val = model.value_of(expr("fab_val"), main)
    assert fab_val is not None and fab_val.call is not None
    assert model.text_of(fab_val.call).startswith("torch.utils.data.DataLoader")


def _events(model, kind):
    return [e for loop in model.loops for e in model.iteration(loop) if e.kind is kind]


def test_bound_method_aliases_are_calls_of_the_method() -> None:
    model = build(
        """
        import functools
        import torch

        def fit(net, loader):
            adam = torch.optim.Adam(net.parameters())
            step = adam.step
            clear = functools.partial(adam.zero_grad, set_to_none=True)
            relu = torch.nn.functional.relu
            for x in loader:
                clear()
                relu(net(x)).sum().backward()
                step()
        """
    )
    [zero] = _events(model, EventKind.ZERO_GRAD)
    [step] = _events(model, EventKind.STEP)
    assert (zero.subject, model.text_of(zero.node)) == ("adam", "clear()")
    assert (step.subject, step.method, model.text_of(step.node)) == ("adam", "step", "step()")
    assert len(model.train_steps) == 1


def test_a_name_rebound_to_different_methods_is_no_alias() -> None:
    model = build(
        """
        import torch

        def fit(net, loader, flag):
            adam = torch.optim.Adam(net.parameters())
            step = adam.step
            if flag:
                step = print
            for x in loader:
                net(x).sum().backward()
                step()
        """
    )
    assert _events(model, EventKind.STEP) == []


def test_isinstance_checks_give_roles_inside_their_branch() -> None:
    model = build(
        """
        import torch
        import torch.nn as nn

        def update(thing, other, loader):
            for x in loader:
                if isinstance(thing, torch.optim.Optimizer):
                    thing.step()
                if not isinstance(other, (nn.Linear, nn.Conv2d)):
                    other.step()
                else:
                    other.eval()
                thing.step()
        """
    )
    update = scope(model, "update")
    receivers = [
        (model.text_of(node), model.role_of(node.func.value, update))
        for node in descendants(update.node)
        if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute)
    ]
    assert receivers == [
        ("thing.step()", Role.OPTIMIZER),
        ("other.step()", None),
        ("other.eval()", Role.MODEL),
        ("thing.step()", None),  # outside the checked branch
    ]


def test_old_transformers_package_names() -> None:
    model = build(
        """
        from pytorch_transformers import AdamW, WarmupLinearSchedule
        from pytorch_pretrained_bert.optimization import BertAdam
        from pytorch_pretrained_bert import BertForSequenceClassification, BertTokenizer

        def main(params):
            adamw = AdamW(params, lr=5e-5)
            bert_adam = BertAdam(params, lr=5e-5, warmup=0.1, t_total=1000)
            warmup = WarmupLinearSchedule(adamw, warmup_steps=100, t_total=1000)
            bert = BertForSequenceClassification.from_pretrained("bert-base-uncased")
            tok = BertTokenizer.from_pretrained("bert-base-uncased")
        """
    )
    main = scope(model, "main")
    roles = {n: model.role_of(expr(n), main) for n in ("adamw", "bert_adam", "warmup", "bert")}
    assert roles == {
        "adamw": Role.OPTIMIZER,
        "bert_adam": Role.OPTIMIZER,
        "warmup": Role.SCHEDULER,
        "bert": Role.MODEL,
    }
    assert model.role_of(expr("tok"), main) is None  # a tokenizer is not a model


def test_optimizer_backward_differentiates_its_argument_and_plain_backward_is_not_one() -> None:
    model = build(
        """
        import torch
        from apex.fp16_utils import FP16_Optimizer

        class Numpy:
            def backward(self, grad):
                return grad

        def fit(net, loader):
            optimizer = FP16_Optimizer(torch.optim.SGD(net.parameters(), lr=0.1))
            layer = Numpy()
            for x in loader:
                optimizer.zero_grad()
                loss = net(x).sum()
                optimizer.backward(loss)
                layer.backward(x)
                optimizer.step()
        """
    )
    [backward] = _events(model, EventKind.BACKWARD)
    assert model.text_of(backward.node) == "optimizer.backward(loss)"
    assert model.text_of(backward.operand) == "loss"
    assert len(model.train_steps) == 1


def test_elements_of_module_containers_are_known_modules() -> None:
    model = build(
        """
        import torch

        class Mixture(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.experts = torch.nn.ModuleDict()
                self.names = {}

            def forward(self, x, key):
                expert = self.experts[key]
                other = self.names[key]
                return expert.forward(x) + other.forward(x)
        """
    )
    forward = scope(model, "Mixture.forward")
    assert model.is_known_module(expr("expert"), forward)
    assert not model.is_known_module(expr("other"), forward)


def test_isinstance_guards_hold_for_the_rest_of_the_block() -> None:
    model = build(
        """
        import torch

        def update(thing, other, loader):
            assert isinstance(thing, torch.optim.Optimizer)
            if not isinstance(other, torch.optim.lr_scheduler.LRScheduler):
                raise TypeError(other)
            for x in loader:
                thing.step()
                other.step()
        """
    )
    update = scope(model, "update")
    receivers = [
        (model.text_of(node), model.role_of(node.func.value, update))
        for node in descendants(update.node)
        if isinstance(node, cst.Call) and model.text_of(node).endswith(".step()")
    ]
    assert receivers == [("thing.step()", Role.OPTIMIZER), ("other.step()", Role.SCHEDULER)]


def test_modules_inside_containers_and_wrappers_are_known_modules() -> None:
    model = build(
        """
        import torch
        from peft import get_peft_model

        class Tower(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.layers = torch.nn.ModuleList([torch.nn.Linear(2, 2)])
                self.named = torch.nn.ModuleDict({"a": torch.nn.Linear(2, 2)})

            def forward(self, x):
                for layer in self.layers:
                    x = layer.forward(x)
                for block in self.named.values():
                    x = block.forward(x)
                for item in [1, 2]:
                    x = item.forward(x)
                return x

        def main(accelerator, config):
            ddp = torch.nn.parallel.DistributedDataParallel(Tower())
            peft_model = get_peft_model(torch.nn.Linear(2, 2), config)
            unwrapped = accelerator.unwrap_model(ddp)
        """
    )
    forward = scope(model, "Tower.forward")
    main = scope(model, "main")
    assert model.is_known_module(expr("layer"), forward)
    assert model.is_known_module(expr("block"), forward)
    assert not model.is_known_module(expr("item"), forward)
    assert model.is_known_module(expr("ddp.module"), main)
    assert model.is_known_module(expr("peft_model"), main)
    assert model.is_known_module(expr("unwrapped"), main)


def test_optimizer_lists_and_starred_forms_map_slot_by_slot() -> None:
    model = build(
        """
        import torch
        from apex import amp

        def main(net, dataset, accelerator):
            first = torch.optim.SGD(net.parameters(), lr=0.1)
            second = torch.optim.Adam(net.parameters())
            feed = torch.utils.data.DataLoader(dataset)
            decay = torch.optim.lr_scheduler.StepLR(first, 1)
            net, [a1, a2] = amp.initialize(net, [first, second], opt_level="O1")
            objs = [net, first, feed, decay]
            w, x, y, z = accelerator.prepare(*objs)
            head, *rest = accelerator.prepare(net, first, feed)
            *front, tail = accelerator.prepare(net, first, feed, decay)
            u1, u2, *middle, u3 = accelerator.prepare(net, first, feed, feed, decay)
            v1, *others, v2 = helper()
            grown = [net, first]
            grown.append(feed)
            *g_front, g_tail = accelerator.prepare(*grown)
            r_opt, r_feed = rest
            m_last = middle[1]
            m_past = middle[2]
        """
    )
    main = scope(model, "main")
    expected = {
        "a1": Role.OPTIMIZER,  # element 0 of the list in slot 1
        "a2": Role.OPTIMIZER,
        "w": Role.MODEL,  # ``*objs`` spread out
        "x": Role.OPTIMIZER,
        "y": Role.LOADER,
        "z": Role.SCHEDULER,
        "head": Role.MODEL,
        "rest": None,  # a list of slots, not one of them
        "front": None,
        "tail": Role.SCHEDULER,  # counted from the end
        "u1": Role.MODEL,
        "u2": Role.OPTIMIZER,
        "middle": None,
        "u3": Role.SCHEDULER,
        "v2": None,  # not a wrapper: how many slots is unknown
        "rest[0]": Role.OPTIMIZER,  # the slots the star holds
        "rest[1]": Role.LOADER,
        "rest[2]": None,
        "r_opt": Role.OPTIMIZER,
        "r_feed": Role.LOADER,
        "m_last": Role.LOADER,
        "m_past": None,  # that slot is ``u3``'s
        "g_tail": None,  # the list grows after its display: how many slots is unknown
    }
    assert {name: model.role_of(expr(name), main) for name in expected} == expected
    assert model.value_of(expr("a2"), main).kind == "torch.optim.Adam"


def test_isinstance_checks_inside_expressions() -> None:
    model = build(
        """
        import torch

        def update(thing, other, third, loader):
            for x in loader:
                thing.step() if isinstance(thing, torch.optim.Optimizer) else thing(x)
                isinstance(other, torch.optim.Optimizer) and other.step()
                not isinstance(third, torch.optim.Optimizer) or third.step()
                y = third.step() if not isinstance(third, torch.optim.Optimizer) else third.eval()
                isinstance(other, torch.optim.Optimizer) or other.eval()
        """
    )
    update = scope(model, "update")
    receivers = [
        (model.text_of(node), model.role_of(node.func.value, update))
        for node in descendants(update.node)
        if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute)
    ]
    assert receivers == [
        ("thing.step()", Role.OPTIMIZER),
        ("other.step()", Role.OPTIMIZER),  # right of ``and``
        ("third.step()", Role.OPTIMIZER),  # right of ``or`` after a negated check
        ("third.step()", None),  # the ``if`` part of a negated check
        ("third.eval()", Role.OPTIMIZER),
        ("other.eval()", None),  # right of ``or``: the check failed
    ]


def test_functions_chosen_from_a_collection() -> None:
    model = build(
        """
        import torch

        def make_a(ds):
            return torch.utils.data.DataLoader(ds, drop_last=True)

        def make_b(ds):
            return torch.utils.data.DataLoader(ds)

        def make_opt(params):
            return torch.optim.SGD(params, lr=0.1)

        NAMES = ["a", "b"]
        MAKERS = [make_a, make_b]
        TABLE = {"a": make_a, "b": make_b}
        MIXED = [make_a, make_opt]

        def main(ds, key):
            for name, make in zip(NAMES, MAKERS):
                zipped = make(ds)
            for i, make2 in enumerate(MAKERS):
                counted = make2(ds)
            for key2, make3 in TABLE.items():
                itemized = make3(ds)
            picked = TABLE[key](ds)
            for make4 in MIXED:
                mixed = make4(ds)
            for make5 in NAMES:
                strings = make5(ds)
        """
    )
    main = scope(model, "main")
    roles = {
        n: model.role_of(expr(n), main)
        for n in ("zipped", "counted", "itemized", "picked", "mixed", "strings")
    }
    assert roles == {
        "zipped": Role.LOADER,
        "counted": Role.LOADER,
        "itemized": Role.LOADER,
        "picked": Role.LOADER,
        "mixed": None,  # the factories disagree
        "strings": None,  # not functions
    }

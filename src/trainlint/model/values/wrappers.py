"""Calls that hand back what they were given, wrapped: which argument each result slot holds.

``model, optimizer = amp.initialize(model, optimizer, opt_level="O1")`` returns the model in
slot 0 and the optimizer in slot 1, not the first argument twice; ``accelerator.prepare``,
``fabric.setup`` and ``fabric.setup_dataloaders`` map their arguments slot by slot.
``deepspeed.initialize(model=..., optimizer=..., training_data=..., lr_scheduler=...)`` returns
``(engine, optimizer, loader, scheduler)``: the engine is new, the other three are built from
(or are) the keyword arguments. DDP, FSDP and ``torch.compile`` wrap their first argument.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from trainlint.model.syntax.nodes import dotted, keyword, method_call, positional

#: Calls that return their first argument re-wrapped, keeping its role.
WRAPPING_CALLS = {
    "torch.compile",
    "torch.jit.script",
    "torch.nn.DataParallel",
    "torch.nn.parallel.DataParallel",
    "torch.nn.parallel.DistributedDataParallel",
    "torch.nn.SyncBatchNorm.convert_sync_batchnorm",
    "torch.distributed.fsdp.FullyShardedDataParallel",
    "torch.distributed.fsdp.fully_sharded_data_parallel.FullyShardedDataParallel",
    "torch.distributed.fsdp.fully_shard",
    "torch.distributed._composable.fsdp.fully_shard",
    "apex.parallel.DistributedDataParallel",
    "apex.parallel.convert_syncbn_model",
    "apex.fp16_utils.FP16_Optimizer",
    "apex.optimizers.FP16_Optimizer",
    "horovod.torch.DistributedOptimizer",
    "fairscale.nn.FullyShardedDataParallel",
    "fairscale.nn.data_parallel.FullyShardedDataParallel",
    "fairscale.optim.oss.OSS",
    "peft.get_peft_model",
    "accelerate.utils.extract_model_from_parallel",
}
#: Calls returning a tuple whose slots are their positional arguments, in order.
SLOT_BY_SLOT_CALLS = {"apex.amp.initialize"}
#: Methods returning their receiver (``model.to(device)``).
RECEIVER_METHODS = {"to", "cuda", "cpu", "half", "float", "double", "bfloat16", "train", "eval"}
#: Methods of accelerate / Fabric objects mapping arguments to result slots one to one.
SLOT_BY_SLOT_METHODS = {"prepare", "setup", "setup_dataloaders", "setup_optimizers"}
#: Methods of accelerate / Fabric objects wrapping one argument.
SINGLE_METHODS = {
    "setup_module",
    "prepare_model",
    "prepare_optimizer",
    "prepare_scheduler",
    "prepare_data_loader",
    "unwrap_model",
}

#: ``deepspeed.initialize`` result slots: (engine, optimizer, loader, scheduler), each slot with
#: the keyword argument it is built from ...
DEEPSPEED_SLOTS = ("model", "optimizer", "training_data", "lr_scheduler")
#: ... and that argument's position in ``initialize(args, model, optimizer, model_parameters,
#: training_data, lr_scheduler, ...)``.
DEEPSPEED_POSITIONS = {"model": 1, "optimizer": 2, "training_data": 4, "lr_scheduler": 5}
#: ``amp.initialize(models, optimizers=None, ...)``: the keyword of each slot.
AMP_KEYWORDS = ("models", "optimizers")


@dataclass(frozen=True)
class Slot:
    """What one result slot of a wrapping call holds.

    ``argument`` is the expression the slot wraps (its role is that expression's role);
    ``made`` names what the call builds itself when the slot wraps nothing the caller passed
    (``"engine"`` for DeepSpeed's slot 0, ``"optimizer"`` for an optimizer built from the
    config, ``"loader"`` for one built from ``training_data=``).
    """

    argument: cst.BaseExpression | None = None
    made: str = ""


#: Positional arguments with ``*objs`` spread out, when the caller can tell what they are
#: (``accelerator.prepare(*objs)`` with ``objs = [model, opt, loader]``); ``None``: unknown.
Positionals = list[cst.BaseExpression] | None


def _argument(
    call: cst.Call, index: int, positionals: Positionals = None
) -> cst.BaseExpression | None:
    if positionals is not None:
        return positionals[index] if 0 <= index < len(positionals) else None
    if any(arg.star == "*" for arg in call.args[: index + 1]):
        return None  # ``prepare(*objs)``: the slot's argument is inside ``objs``
    found = positional(call, index)
    if found is None or isinstance(found, cst.StarredElement):
        return None
    return found


def slot_count(call: cst.Call, positionals: Positionals = None) -> int | None:
    """How many slots a slot-by-slot wrapper returns (as many as it was given), for names
    unpacked after a star (``*front, sched = accelerator.prepare(...)``)."""
    if positionals is not None:
        return len(positionals)
    if any(arg.star == "*" for arg in call.args):
        return None
    return sum(1 for arg in call.args if arg.keyword is None and not arg.star)


def wrapped_slot(
    call: cst.Call, qualified: str | None, index: int | None, positionals: Positionals = None
) -> Slot | None:
    """For a wrapping call: what result slot ``index`` (``None``: the whole result) holds.
    ``positionals`` are the call's positional arguments with ``*`` spread out, if known."""
    if qualified == "deepspeed.initialize":
        return _deepspeed_slot(call, index or 0)
    if qualified in ("intel_extension_for_pytorch.optimize",):
        if index in (None, 0):
            return Slot(_argument(call, 0) or keyword(call, "model"))
        return Slot(keyword(call, "optimizer")) if index == 1 else None
    if qualified in SLOT_BY_SLOT_CALLS:
        return _amp_slot(call, index or 0, positionals)
    if qualified in WRAPPING_CALLS or (qualified or "").endswith("DistributedDataParallel"):
        return Slot(_argument(call, 0) or keyword(call, "module") or keyword(call, "model"))
    method = method_call(call)
    if method is None:
        return None
    receiver, name = method
    if name in RECEIVER_METHODS:
        return Slot(receiver)
    if name in SINGLE_METHODS:
        return Slot(_argument(call, 0))
    if name == "initialize" and dotted(receiver) == "amp":
        return _amp_slot(call, index or 0, positionals)  # a vendored copy of apex's ``amp``
    if name in SLOT_BY_SLOT_METHODS:
        return Slot(_argument(call, index or 0, positionals))
    return None


def is_slot_by_slot(call: cst.Call, qualified: str | None) -> bool:
    """Whether ``call`` returns one slot per positional argument (apex, accelerate, Fabric)."""
    if qualified in SLOT_BY_SLOT_CALLS:
        return True
    method = method_call(call)
    if method is None:
        return False
    receiver, name = method
    return name in SLOT_BY_SLOT_METHODS or (name == "initialize" and dotted(receiver) == "amp")


def _amp_slot(call: cst.Call, index: int, positionals: Positionals = None) -> Slot:
    found = _argument(call, index, positionals)
    if found is None and index < len(AMP_KEYWORDS):
        found = keyword(call, AMP_KEYWORDS[index])
    return Slot(found)


def _deepspeed_slot(call: cst.Call, index: int) -> Slot | None:
    if index == 0:
        return Slot(made="engine")
    if index >= len(DEEPSPEED_SLOTS):
        return None
    slot = DEEPSPEED_SLOTS[index]
    given = keyword(call, slot)
    if given is None:
        given = _argument(call, DEEPSPEED_POSITIONS[slot])
    if index == 1:
        # DeepSpeed wraps the optimizer given, or builds one from its config
        return Slot(given) if given is not None else Slot(made="optimizer")
    if index == 2:
        return Slot(made="loader") if given is not None else None
    return Slot(given) if given is not None else None

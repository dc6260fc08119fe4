"""Adam without torch.optim: the same fused kernel, the same state, none of the compiler.

Every torch.optim optimizer imports torch._dynamo (torch's compiler stack) the first time a
parameter group is added: 1.3 s of a 7-s training run on a 2-core CPU (bench/startup.py), paid
by every run whether anything is compiled or not. aegen's trainer needs one update rule, Adam
with L2 weight decay, and torch ships its fused kernel as an operator (torch._fused_adam_), so
this class calls that kernel directly, as torch.optim.Adam(fused=True) does. Its updates are
bit-identical to torch.optim.Adam(fused=True) and its state_dict has torch's layout, so
checkpoints written by either load into the other (tests/training/test_adam.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

EPS = 1e-8  # torch.optim.Adam's default
# torch.optim.Adam's variants this class does not run: a saved state that used one is refused.
UNSUPPORTED = ("amsgrad", "maximize", "decoupled_weight_decay", "differentiable")


class FusedAdam:
    """Adam (Kingma & Ba) with L2 weight decay on one group of parameters, updated by torch's
    fused kernel. `lr` is a float, or a 0-d tensor on the parameters' device for a step
    recorded in a CUDA graph (capturable: the step counts then live on the device too, as
    they always do for the fused kernel)."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float | torch.Tensor,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        capturable: bool = False,
    ):
        parameters = list(params)
        if not parameters:
            raise ValueError("FusedAdam got no parameters")
        if not (float(lr) >= 0 and weight_decay >= 0 and all(0 <= b < 1 for b in betas)):
            raise ValueError(
                "Adam needs lr >= 0, weight_decay >= 0 and betas in [0, 1), got "
                f"lr={float(lr)}, weight_decay={weight_decay}, betas={tuple(betas)}"
            )
        self.defaults: dict[str, Any] = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": EPS,
            "weight_decay": float(weight_decay),
            "amsgrad": False,
            "maximize": False,
            "foreach": None,
            "capturable": capturable,
            "differentiable": False,
            "fused": True,
            "decoupled_weight_decay": False,
        }
        self.param_groups: list[dict[str, Any]] = [{**self.defaults, "params": parameters}]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for param in group["params"]:
                if set_to_none:
                    param.grad = None
                elif param.grad is not None:
                    param.grad.detach_().zero_()

    def _state_of(self, param: torch.Tensor) -> dict[str, torch.Tensor]:
        state = self.state.get(param)
        if state is None:
            state = self.state[param] = {
                "step": torch.zeros((), dtype=torch.float32, device=param.device),
                "exp_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(param, memory_format=torch.preserve_format),
            }
        return state

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every parameter that has a gradient."""
        for group in self.param_groups:
            batches: dict[tuple[torch.device, torch.dtype], list[list[torch.Tensor]]] = {}
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self._state_of(param)
                lists = batches.setdefault((param.device, param.dtype), [[], [], [], [], []])
                for into, tensor in zip(
                    lists,
                    (param, param.grad, state["exp_avg"], state["exp_avg_sq"], state["step"]),
                ):
                    into.append(tensor)
            beta1, beta2 = group["betas"]
            for params, grads, averages, squares, steps in batches.values():
                torch._foreach_add_(steps, 1)
                torch._fused_adam_(
                    params,
                    grads,
                    averages,
                    squares,
                    [],
                    steps,
                    amsgrad=False,
                    lr=group["lr"],
                    beta1=beta1,
                    beta2=beta2,
                    weight_decay=group["weight_decay"],
                    eps=group["eps"],
                    maximize=False,
                )

    def state_dict(self) -> dict[str, Any]:
        """torch.optim's layout: per-parameter state keyed by the parameter's position, and the
        groups' settings with their parameters as positions."""
        positions: dict[torch.Tensor, int] = {}
        groups = []
        for group in self.param_groups:
            first = len(positions)
            for param in group["params"]:
                positions[param] = len(positions)
            groups.append(
                {
                    **{k: v for k, v in group.items() if k != "params"},
                    "params": list(range(first, len(positions))),
                }
            )
        state = {positions[p]: dict(s) for p, s in self.state.items() if p in positions}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Take the saved settings and per-parameter state (a torch.optim.Adam's too), placed on
        each parameter's device, moments in its dtype and layout, step counts in float32. All of
        it is checked before anything changes; a mismatch is a ValueError."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups) or any(
            len(saved["params"]) != len(group["params"])
            for saved, group in zip(saved_groups, self.param_groups)
        ):
            raise ValueError("the saved state has other parameter groups than this optimizer")
        for saved in saved_groups:
            unsupported = [key for key in UNSUPPORTED if saved.get(key)]
            if unsupported:
                raise ValueError(f"the saved Adam used {unsupported[0]}, which FusedAdam does not")
        params = [p for group in self.param_groups for p in group["params"]]
        state = {}
        for index, values in state_dict["state"].items():
            if not 0 <= int(index) < len(params):
                raise ValueError(f"the saved state names parameter {index} of {len(params)}")
            param = params[int(index)]
            state[param] = {key: _placed(key, value, param) for key, value in values.items()}
        for saved, group in zip(saved_groups, self.param_groups):
            for key, value in saved.items():
                if key == "betas":
                    group[key] = tuple(value)
                elif key != "params":
                    group[key] = value.clone() if torch.is_tensor(value) else value
        self.state = state


def _placed(key: str, value: Any, param: torch.Tensor) -> torch.Tensor:
    """One saved state value on its parameter's device: the step count a float32 scalar (a plain
    number in an older state), a moment in the parameter's shape, dtype and layout."""
    if key == "step":
        step = torch.as_tensor(value, dtype=torch.float32)
        if step.dim() != 0:
            raise ValueError(f"a saved step count has shape {tuple(step.shape)}, not a scalar")
        return step.to(param.device)
    if not torch.is_tensor(value) or value.shape != param.shape:
        shape = tuple(value.shape) if torch.is_tensor(value) else type(value).__name__
        raise ValueError(f"a saved {key} is {shape}, its parameter {tuple(param.shape)}")
    return torch.empty_like(param).copy_(value)

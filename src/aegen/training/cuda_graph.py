"""A whole training step (forward, backward, Adam) recorded once as a CUDA graph and replayed.

Why: these models are small. A VAE step is ~400 tiny kernels, and on a GPU the host's time to
launch them, not the GPU's time to run them, sets the pace (an H200 took 2.9 ms a step where
the step's matmuls need 0.2 ms; bench/README.md). A replay launches the recorded kernels in one
call. The step stays the same arithmetic: same batches, same noise generator, same Adam.

Recording follows torch.cuda.graph's rules: a few eager warm-up steps on a side stream first,
gradients set to None before the recording, inputs read from fixed buffers (the batch's index
into the device-resident data set is copied into one), an Adam built with capturable=True.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from aegen.errors import TrainingError, first_line

WARMUP_STEPS = 3  # eager steps before recording, so that lazy initialisation happens outside it

Step = Callable[[torch.Tensor], tuple[torch.Tensor, dict[str, torch.Tensor]]]


class GraphedStep:
    """Calls step(index) eagerly for the first WARMUP_STEPS batches, then records it and replays
    the recording for every later batch of the same size. The returned loss and terms are the
    graph's own buffers: read them (StepLosses copies them) before the next call."""

    def __init__(
        self, step: Step, zero_grad: Callable[[], None], batch_size: int, device: torch.device
    ):
        self.step, self.zero_grad = step, zero_grad
        self.batch_size, self.device = batch_size, device
        self.warmed = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.index = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.side_stream = torch.cuda.Stream(device)
        self.outputs: tuple[torch.Tensor, dict[str, torch.Tensor]] | None = None

    def fits(self, index: torch.Tensor) -> bool:
        """Only full batches replay; the epoch's shorter last batch runs eagerly."""
        return len(index) == self.batch_size

    def __call__(self, index: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.graph is None:
            if self.warmed < WARMUP_STEPS:
                self.warmed += 1
                return self._on_side_stream(lambda: _detached(self.step(index)))
            self._record()
        graph, outputs = self.graph, self.outputs
        assert graph is not None and outputs is not None  # _record() sets both or raises
        self.index.copy_(index)
        graph.replay()
        return outputs

    def _on_side_stream(self, work: Callable):
        side = self.side_stream
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            result = work()
        torch.cuda.current_stream(self.device).wait_stream(side)
        return result

    def _record(self) -> None:
        self.zero_grad()  # backward inside the recording then allocates the grads in its pool
        graph = torch.cuda.CUDAGraph()
        try:  # the outer stream context restores the stream should the recording fail
            with torch.cuda.stream(torch.cuda.current_stream(self.device)), torch.cuda.graph(graph):
                self.outputs = _detached(self.step(self.index))
        except RuntimeError as exc:  # a recording cannot hold a host read (.item(), if tensor:)
            raise TrainingError(
                f"the training step could not be recorded as a CUDA graph "
                f"({first_line(exc)}): the model's loss probably reads a value back "
                "to the host; train it with --no-cuda-graphs, in a new process "
                "(this one's CUDA random generator stays mid-recording)"
            ) from exc
        self.graph = graph


def _detached(outputs: tuple[torch.Tensor, dict[str, torch.Tensor]]):
    """The losses without their autograd graph, which would otherwise live on (and tie the
    parameters' gradient accumulators to the stream that made them) until the next step."""
    loss, terms = outputs
    return loss.detach(), {name: value.detach() for name, value in terms.items()}

"""Adam ascent steps for the bound optimisers (alpha-CROWN, beta-CROWN, the SDP polish).

Our own few lines instead of ``torch.optim.Adam``: the first ``torch.optim`` optimiser a
process builds imports ``torch._dynamo`` (about 2 s of start-up on a 2-core machine, measured
by ``benchmarks/bench_startup.py``), and the verifier needs none of it. The update is Adam's
(Kingma and Ba, 2015) with bias correction, as ``torch.optim.Adam`` computes it without
weight decay or amsgrad.

Soundness does not depend on this module: every iterate the optimisers produce is certified
on its own, so the step rule only decides how good the bounds get.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


class Adam:
    """Adam on fixed groups of leaf tensors, each group with its own step size.

    ``step`` updates every tensor that has a gradient in place (under ``no_grad``);
    ``zero_grad`` drops the gradients. The moment estimates live on the tensors' device
    and dtype.
    """

    def __init__(self, groups: Sequence[tuple[Sequence[Tensor], float]], betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params = [(p, lr) for tensors, lr in groups for p in tensors]
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.steps = [0] * len(self.params)  # per tensor: one without a gradient is not stepped
        self.first = [torch.zeros_like(p) for p, _ in self.params]
        self.second = [torch.zeros_like(p) for p, _ in self.params]

    def decay(self, factor: float) -> None:
        """Multiplies every tensor's step size by ``factor`` (a learning-rate schedule)."""
        self.params = [(p, lr * factor) for p, lr in self.params]

    def zero_grad(self) -> None:
        """Forgets every tensor's gradient (``grad = None``)."""
        for p, _ in self.params:
            p.grad = None

    def step(self) -> None:
        """One Adam update of every tensor with a gradient."""
        with torch.no_grad():
            for i, ((p, lr), m, v) in enumerate(zip(self.params, self.first, self.second, strict=True)):
                if p.grad is None:
                    continue
                self.steps[i] += 1
                correction1 = 1.0 - self.beta1 ** self.steps[i]
                correction2 = math.sqrt(1.0 - self.beta2 ** self.steps[i])
                m.mul_(self.beta1).add_(p.grad, alpha=1.0 - self.beta1)
                v.mul_(self.beta2).addcmul_(p.grad, p.grad, value=1.0 - self.beta2)
                # sqrt(v + 1e-300): the same denominators (the tiny term vanishes next to eps), but
                # zeros never reach sqrt, which takes ten times longer on them on some CPUs
                p.addcdiv_(m, (v.add(1e-300).sqrt_() / correction2).add_(self.eps), value=-lr / correction1)

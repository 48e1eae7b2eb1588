"""Plain gradient descent: ``x <- x - lr g``, nothing else (noise comes from the scenario's ``noise``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class GradientDescent(torch.optim.SGD):
    r"""Gradient descent, ``x_{t+1} = x_t - lr g_t``, with ``g_t`` the gradient the engine passes
    (exact, or with the scenario's Gaussian noise, which makes it SGD in the sense of Robbins and
    Monro 1951). :class:`torch.optim.SGD` with momentum, dampening, weight decay and Nesterov
    fixed off, so that a spec ``gd(lr=0.1)`` cannot mean anything else.

    Reference: A. Cauchy, "Methode generale pour la resolution des systemes d'equations
    simultanees", C. R. Acad. Sci. Paris 25 (1847).
    """

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], lr: float = 0.01) -> None:
        super().__init__(params, lr=lr)

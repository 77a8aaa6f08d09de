"""First-order optimizers for gradc's training loop.

Every optimizer has one method, ``step(params, grads)``: ``params`` and
``grads`` are dicts keyed by parameter name (``grads`` may name a subset of
``params``); NumPy arrays in ``params`` are updated in place, Python-float
scalars are replaced by their new value. Per-parameter state (velocities,
accumulated squares, per-weight rates) is created on the first step and kept
by name, so one optimizer object serves one set of parameters.

In the formulas θ is a parameter, g its gradient at the current step, ε a
learning rate, and ⊙, √·, division and squares act elementwise.

Sources: the lecture notes (SGD with minibatch estimate θ' = θ − εg,
delta-bar-delta, AdaGrad, RMSProp under "Different Optimizers") and the papers
cited in each class; Goodfellow, Bengio & Courville, *Deep Learning* (2016),
ch. 8 (algorithms 8.1-8.7) states the same rules in the same notation.
"""
from __future__ import annotations

import numpy as np

__all__ = ["Optimizer", "SGD", "Momentum", "AdaGrad", "RMSProp", "Adam", "DeltaBarDelta", "OPTIMIZERS"]


class Optimizer:
    """Base class: subclasses implement ``_delta(name, g) -> Δθ`` (an array
    shaped like the parameter), and :meth:`step` applies θ ← θ + Δθ."""

    #: True for methods defined on the full-batch gradient (``train`` then uses one batch per step).
    full_batch = False

    def __init__(self):
        self.state: dict[str, dict] = {}
        self.t = 0                          # steps taken

    def step(self, params: dict, grads: dict) -> None:
        """Update ``params`` in place from ``grads`` (dicts keyed by name)."""
        self.t += 1
        for name, g in grads.items():
            g = np.asarray(g, dtype=np.float64)
            delta = self._delta(name, g)
            p = params[name]
            if isinstance(p, np.ndarray):
                p += delta
            else:
                params[name] = float(p + delta)

    def _slot(self, name: str, key: str, like: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """The state array ``key`` of parameter ``name``, created filled with ``fill``."""
        slots = self.state.setdefault(name, {})
        if key not in slots:
            slots[key] = np.full(np.shape(like), fill, dtype=np.float64)
        return slots[key]

    def _delta(self, name: str, g: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k not in ("state", "t"))
        return f"{type(self).__name__}({opts})"


class SGD(Optimizer):
    """Stochastic gradient descent (Robbins & Monro 1951; the lecture notes' "SGD
    estimate on minibatch"; Deep Learning alg. 8.1):

        θ ← θ − ε·g

    with ``lr`` = ε and g the gradient of the minibatch's mean loss.
    """

    def __init__(self, lr: float = 0.1):
        super().__init__()
        self.lr = lr

    def _delta(self, name, g):
        return -self.lr * g


class Momentum(SGD):
    """SGD with momentum (Polyak 1964, "heavy ball"; Deep Learning alg. 8.2;
    Sutskever, Martens, Dahl & Hinton 2013 for the Nesterov form):

        v ← μ·v − ε·g                       (v starts at 0)
        θ ← θ + v

    With ``nesterov=True`` the gradient is meant at the look-ahead point
    θ + μv; written in terms of the gradient at the current point (the
    reparametrisation of Sutskever et al. / Bengio et al. 2013):

        v' ← μ·v − ε·g
        θ  ← θ − μ·v + (1 + μ)·v'

    ``lr`` = ε, ``mu`` = μ.
    """

    def __init__(self, lr: float = 0.01, mu: float = 0.9, nesterov: bool = False):
        super().__init__(lr)
        self.mu = mu
        self.nesterov = nesterov

    def _delta(self, name, g):
        v = self._slot(name, "v", g)
        v_old = v.copy() if self.nesterov else None
        v *= self.mu
        v -= self.lr * g
        if self.nesterov:
            return -self.mu * v_old + (1.0 + self.mu) * v
        return v.copy()


class AdaGrad(Optimizer):
    """AdaGrad (Duchi, Hazan & Singer 2011; the lecture notes: rates scaled
    inversely proportional to the root of the sum of all past squared
    gradients; Deep Learning alg. 8.4):

        r ← r + g ⊙ g                       (r starts at 0)
        θ ← θ − ε·g / (√r + δ)

    ``lr`` = ε, ``eps`` = δ (for numerical stability).
    """

    def __init__(self, lr: float = 0.01, eps: float = 1e-8):
        super().__init__()
        self.lr = lr
        self.eps = eps

    def _delta(self, name, g):
        r = self._slot(name, "r", g)
        r += g * g
        return -self.lr * g / (np.sqrt(r) + self.eps)


class RMSProp(Optimizer):
    """RMSProp (Hinton, Srivastava & Swersky, Coursera "Neural Networks for
    Machine Learning" lecture 6e, 2012; the lecture notes: AdaGrad with the
    sum of squares replaced by an exponentially weighted moving average;
    Deep Learning alg. 8.5):

        r ← ρ·r + (1 − ρ)·g ⊙ g             (r starts at 0)
        θ ← θ − ε·g / (√r + δ)

    ``lr`` = ε, ``rho`` = ρ, ``eps`` = δ.
    """

    def __init__(self, lr: float = 0.001, rho: float = 0.9, eps: float = 1e-8):
        super().__init__()
        self.lr = lr
        self.rho = rho
        self.eps = eps

    def _delta(self, name, g):
        r = self._slot(name, "r", g)
        r *= self.rho
        r += (1.0 - self.rho) * g * g
        return -self.lr * g / (np.sqrt(r) + self.eps)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015, algorithm 1; Deep Learning alg. 8.7), at step
    t = 1, 2, ...:

        m ← β₁·m + (1 − β₁)·g               (m, v start at 0)
        v ← β₂·v + (1 − β₂)·g ⊙ g
        m̂ = m / (1 − β₁ᵗ),   v̂ = v / (1 − β₂ᵗ)      (bias correction)
        θ ← θ − ε·m̂ / (√v̂ + δ)

    ``lr`` = ε, ``beta1`` = β₁, ``beta2`` = β₂, ``eps`` = δ; t counts calls of
    :meth:`step`.
    """

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        super().__init__()
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps

    def _delta(self, name, g):
        m = self._slot(name, "m", g)
        v = self._slot(name, "v", g)
        m *= self.beta1
        m += (1.0 - self.beta1) * g
        v *= self.beta2
        v += (1.0 - self.beta2) * g * g
        m_hat = m / (1.0 - self.beta1 ** self.t)
        v_hat = v / (1.0 - self.beta2 ** self.t)
        return -self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


class DeltaBarDelta(Optimizer):
    """Delta-bar-delta (Jacobs 1988, "Increased rates of convergence through
    learning rate adaptation", Neural Networks 1(4):295-307; the lecture notes:
    full-batch only; a weight's rate grows while its partial derivative keeps
    its sign and shrinks when the sign changes). Every weight w has its own
    rate ε (starting at ``lr``); with δ(t) = ∂J/∂w at step t and δ̄ an
    exponential average of past derivatives (starting at 0):

        ε ← ε + κ            if δ̄(t−1)·δ(t) > 0     (signs agree: grow linearly)
        ε ← (1 − φ)·ε        if δ̄(t−1)·δ(t) < 0     (signs disagree: shrink geometrically)
        ε unchanged          otherwise
        w ← w − ε·δ(t)                                (with the new ε)
        δ̄(t) = (1 − θ)·δ(t) + θ·δ̄(t−1)

    ``kappa`` = κ, ``phi`` = φ, ``theta`` = θ (Jacobs' names). The rule assumes
    the exact (full-batch) gradient: :func:`gradc.runtime.train` gives it the
    whole training set per step (``full_batch = True``).
    """

    full_batch = True

    def __init__(self, lr: float = 0.01, kappa: float = 0.001, phi: float = 0.1, theta: float = 0.7):
        super().__init__()
        self.lr = lr
        self.kappa = kappa
        self.phi = phi
        self.theta = theta

    def _delta(self, name, g):
        rate = self._slot(name, "rate", g, fill=self.lr)
        bar = self._slot(name, "bar", g)
        agree = bar * g
        rate[...] = np.where(agree > 0, rate + self.kappa, np.where(agree < 0, rate * (1.0 - self.phi), rate))
        bar *= self.theta
        bar += (1.0 - self.theta) * g
        return -rate * g


#: Optimizers by lower-case name: ``train(..., optimizer="adam")`` and command-line flags.
OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "adagrad": AdaGrad, "rmsprop": RMSProp,
              "adam": Adam, "deltabardelta": DeltaBarDelta}

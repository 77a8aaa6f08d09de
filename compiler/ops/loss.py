"""Losses and label indexing.

* ``pick(s, y)``: ``s[i, y[i]]`` for scores ``s: f64[n,k]`` and labels ``y: i64[n]``.
* ``softmax_cross_entropy(s, y)``: per-row ``logsumexp(s[i]) - s[i, y[i]]``,
  computed with the max-shifted log-sum-exp; adjoint ``g[i] (softmax(s[i]) - onehot(y[i]))``
  (CS231n "Softmax classifier" notes).
* ``mse(p, t)``: ``mean((p - t)²)``; adjoint ``2 (p - t) / n``.
Labels are not differentiable. The fused loops live in helper functions of the
generated module (``templates/ops/loss.j2``).
"""
from __future__ import annotations

from ..errors import ShapeError
from . import broadcast, fmt, need_float, register


def _label_rule(args, attrs):
    s, y = args[:2]
    need_float(s)
    if y.dtype != "i64":
        raise ShapeError(f"labels {fmt(y)} must be int64", hint='declare them with dtype = "int64"')
    if s.rank != 2 or y.rank != 1 or s.shape[0] != y.shape[0]:
        raise ShapeError(f"need scores [n,k] and labels [n], got {fmt(s)} and {fmt(y)}")
    return "f64", (s.shape[0],)


def _label_vjp_rule(args, attrs):
    g, s, y = args
    _label_rule([s, y], attrs)
    if g.shape != (s.shape[0],):
        raise ShapeError(f"cotangent {fmt(g)} must have one entry per row of {fmt(s)}")
    return "f64", s.shape


def _mse_rule(args, attrs):
    need_float(*args)
    broadcast(*args)
    return "f64", ()


def _mse_vjp(b, s, g):
    p, t = s.args
    diff = b.emit("sub", p, t)          # the mean is over the broadcast shape, not p's
    d = b.emit("mul", g, b.emit("div", b.emit("mul", 2.0, diff), b.emit("size", diff)))
    return [d, b.emit("neg", d)]


register("pick", _label_rule, lambda b, s, g: [b.emit("pick_vjp", g, *s.args), None],
         "pick: scatters g into the picked entries", helpers=("pick",), family="loss")
register("pick_vjp", _label_vjp_rule, None, helpers=("pick_vjp",), family="loss")
register("softmax_cross_entropy", _label_rule,
         lambda b, s, g: [b.emit("softmax_cross_entropy_vjp", g, *s.args), None],
         "softmax cross-entropy: g (softmax(s) - onehot(y))", helpers=("softmax_cross_entropy",),
         family="loss")
register("softmax_cross_entropy_vjp", _label_vjp_rule, None,
         helpers=("softmax_cross_entropy_vjp",), family="loss")
register("mse", _mse_rule, _mse_vjp, "mse: 2 (p - t) / n", family="loss")

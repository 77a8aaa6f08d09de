"""Losses and label indexing.

* ``pick(s, y)``: ``s[i, y[i]]`` for scores ``s: f64[n,k]`` and labels ``y: i64[n]``.
* ``softmax_cross_entropy(s, y)``: per-row ``logsumexp(s[i]) - s[i, y[i]]``,
  computed with the max-shifted log-sum-exp as ``(m - s[i, y[i]]) + log1p(Σ_{j≠argmax} exp(s[i,j] - m))``
  (no cancellation when the label is the maximum); adjoint ``g[i] (softmax(s[i]) - onehot(y[i]))``,
  its label entry as ``-g[i] Σ_{j≠y[i]} softmax(s[i])_j``
  (CS231n "Softmax classifier" notes).
* ``mse(p, t)``: ``mean((p - t)²)``; adjoint ``2 (p - t) / n``.
* ``binary_cross_entropy(z, y)``: elementwise ``-(y log σ(z) + (1 - y) log(1 - σ(z)))``
  from logits ``z`` and float targets ``y`` (broadcasting, result shaped like
  the broadcast), computed stably as ``max(z, 0)(1 - y) + max(-z, 0) y + log1p(exp(-|z|))``
  (= ``max(z, 0) - z·y + log1p(exp(-|z|))``, with no cancellation for targets in [0, 1]);
  adjoints ``g (σ(z) - y)`` to the logits, computed as ``g ((1 - y) σ(z) - y σ(-z))``,
  and ``-g z`` to the targets.
* ``svm_hinge(s, y)``: the multiclass SVM loss of the lecture notes (CS231n
  "Linear classification"), per row ``L_i = Σ_{j≠y_i} max(0, s_j - s_{y_i} + 1)``
  for scores ``s: f64[n,k]`` and labels ``y: i64[n]``, result ``f64[n]``.
  Adjoint: each j ≠ y_i with margin ``s_j - s_{y_i} + 1 > 0`` gets ``g_i`` and
  ``s_{y_i}`` gets ``-g_i`` times their count. At the hinge kink (margin exactly
  0) the term counts as **inactive** (derivative 0, like relu'(0) = 0).
  Labels outside ``[0, k)`` raise ``ValueError`` at run time (as in ``pick``).
Labels are not differentiable. The fused loops live in helper functions of the
generated module (``templates/ops/loss.j2``).
"""
from __future__ import annotations

from ..errors import ShapeError
from . import broadcast, float_dtype, fmt, need_float, reduction_jvp, register

#: the JVP of a per-row loss of scores [n, k]: the weighted sum of the tangent along each row
_ROWS = reduction_jvp(lambda s: 1)


def _label_rule(args, attrs):
    s, y = args[:2]
    need_float(s)
    if y.dtype != "i64":
        raise ShapeError(f"labels {fmt(y)} must be int64", hint='declare them with dtype = "int64"')
    if s.rank != 2 or y.rank != 1 or s.shape[0] != y.shape[0]:
        raise ShapeError(f"need scores [n,k] and labels [n], got {fmt(s)} and {fmt(y)}")
    return s.dtype, (s.shape[0],)


def _label_vjp_rule(args, attrs):
    g, s, y = args
    _label_rule([s, y], attrs)
    if g.shape != (s.shape[0],):
        raise ShapeError(f"cotangent {fmt(g)} must have one entry per row of {fmt(s)}")
    return float_dtype(g, s), s.shape


def _mse_rule(args, attrs):
    broadcast(*args)
    return float_dtype(*args), ()


def _mse_vjp(b, s, g):
    p, t = s.args
    diff = b.emit("sub", p, t)          # the mean is over the broadcast shape, not p's
    d = b.emit("mul", g, b.emit("div", b.emit("mul", 2.0, diff), b.emit("size", diff)))
    return [d, b.emit("neg", d)]


def _sce_vjp_jvp(b, s, ts):
    """The JVP of ``softmax_cross_entropy_vjp(g, s, y) = G (P - onehot(y))`` (G = g broadcast
    along the rows, P = softmax(s)): ``G' (P - onehot) + G dP`` with the softmax's JVP
    ``dP = P ⊙ (s' - Σ_j P_j s'_j)`` (row by row)."""
    tg, ts_, _ = ts
    g, scores, y = s.args
    total = b.emit(s.op, tg, scores, y) if tg is not None else None
    if ts_ is None:
        return total
    lse = b.emit("logsumexp", scores, axis=1)
    p = b.emit("exp", b.emit("sub", scores, b.emit("expand", lse, scores, axis=1)), name="softmax")
    mean_t = b.emit("expand", b.emit("sum", b.emit("mul", p, ts_), axis=1), scores, axis=1)
    dp = b.emit("mul", p, b.emit("sub", ts_, mean_t), name="dsoftmax")
    term = b.emit("mul", b.emit("expand", g, scores, axis=1), dp)
    return term if total is None else b.emit("add", total, term)


register("pick", _label_rule, lambda b, s, g: [b.emit("pick_vjp", g, *s.args), None],
         "pick: scatters g into the picked entries", helpers=("pick",), family="loss",
         spelling="pick", operands=("s", "y"), linear=(0,))
register("pick_vjp", _label_vjp_rule, None, helpers=("pick_vjp",), family="loss", linear=(0,))
register("softmax_cross_entropy", _label_rule,
         lambda b, s, g: [b.emit("softmax_cross_entropy_vjp", g, *s.args), None],
         "softmax cross-entropy: g (softmax(s) - onehot(y))", helpers=("softmax_cross_entropy",),
         family="loss", spelling="softmax_cross_entropy", operands=("s", "y"), jvp=_ROWS)
register("softmax_cross_entropy_vjp", _label_vjp_rule, None,
         helpers=("softmax_cross_entropy_vjp",), family="loss", jvp=_sce_vjp_jvp)
register("mse", _mse_rule, _mse_vjp, "mse: 2 (p - t) / n", family="loss", spelling="mse", operands=("p", "t"),
         jvp=reduction_jvp(lambda s: None))


# ------------------------------------------------------------ issue 3
def _bce_rule(args, attrs):
    return float_dtype(*args), broadcast(*args)


def _bce_vjp(b, s, g):
    # sigmoid(z) - y as (1 - y) sigmoid(z) - y sigmoid(-z): exact for hard targets (y = 1 gives
    # -sigmoid(-z), where sigmoid(z) - 1 would round to 0 for z > 37)
    z, y = s.args
    dz = b.emit("sub", b.emit("mul", b.emit("sub", 1.0, y), b.emit("sigmoid", z)),
                b.emit("mul", y, b.emit("sigmoid", b.emit("neg", z))), name="dbce")
    return [b.emit("mul", g, dz), b.emit("neg", b.emit("mul", g, z))]


register("binary_cross_entropy", _bce_rule, _bce_vjp,
         "binary cross-entropy: g (sigmoid(z) - y) to the logits, -g z to the targets", family="loss",
         elementwise=True, spelling="binary_cross_entropy", operands=("logits", "y"))
register("svm_hinge", _label_rule, lambda b, s, g: [b.emit("svm_hinge_vjp", g, *s.args), None],
         "svm hinge: g_i to each s_j with margin > 0, minus g_i per such j to s[i, y[i]] (margin 0 inactive)",
         helpers=("svm_hinge",), family="loss", spelling="svm_hinge", operands=("scores", "y"), jvp=_ROWS)
# linear in g; in the scores piecewise constant (the active margins change only at the hinge)
register("svm_hinge_vjp", _label_vjp_rule, None, helpers=("svm_hinge_vjp",), family="loss", linear=(0,))

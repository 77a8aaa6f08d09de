"""Matrix products and transposes.

matmul covers matrix-matrix [m,k]@[k,n], matrix-vector [m,k]@[k],
vector-matrix [k]@[k,n] and the dot product [k]@[k]. Its adjoint is the
standard pair dA = G Bᵀ, dB = Aᵀ G (CS231n notes "Derivatives, Backpropagation,
and Vectorization"; for ‖Wx‖²: ∇W = 2q xᵀ, ∇x = 2Wᵀq) with outer products
for the vector cases. ``item`` turns a 1×1 matrix (SymPy's ``x.T*x``) into a scalar.
``trace`` (SymPy's Trace) has the adjoint ``eye(g, X) = g I``, whose adjoint is the trace again.
"""
from __future__ import annotations

from ..errors import ShapeError
from . import bilinear_jvp, float_dtype, fmt, need_float, register


def _matmul_rule(args, attrs):
    a, b = args
    need_float(a, b)
    if a.rank not in (1, 2) or b.rank not in (1, 2):
        raise ShapeError(f"@ needs vectors or matrices, got {fmt(a)} @ {fmt(b)}")
    k_a = a.shape[-1]
    k_b = b.shape[0]
    if k_a != k_b:
        raise ShapeError(f"inner dimensions differ in {fmt(a)} @ {fmt(b)}: {k_a} vs {k_b}",
                         hint="the last dimension of the left operand must equal the first of the right")
    return float_dtype(a, b), a.shape[:-1] + b.shape[1:]


def _matmul_vjp(b, s, g):
    x, y = s.args
    if x.rank == 2 and y.rank == 2:
        return [b.emit("matmul", g, _T(b, y)), b.emit("matmul", _T(b, x), g)]
    if x.rank == 2:           # [m,k] @ [k] -> [m]
        return [b.emit("outer", g, y), b.emit("matmul", _T(b, x), g)]
    if y.rank == 2:           # [k] @ [k,n] -> [n]
        return [b.emit("matmul", y, g), b.emit("outer", x, g)]
    return [b.emit("mul", g, y), b.emit("mul", g, x)]   # dot product


def _T(b, x):
    """``x`` transposed, named by its role: ``W2_T``."""
    return b.emit("transpose", x, name=f"{x.name}_T")


def _transpose_rule(args, attrs):
    (x,) = args
    if x.rank != 2:
        raise ShapeError(f"transpose needs a matrix, got {fmt(x)}")
    return x.dtype, (x.shape[1], x.shape[0])


def _outer_rule(args, attrs):
    a, b = args
    need_float(a, b)
    if a.rank != 1 or b.rank != 1:
        raise ShapeError(f"outer needs two vectors, got {fmt(a)} and {fmt(b)}")
    return float_dtype(a, b), (a.shape[0], b.shape[0])


def _item_rule(args, attrs):
    (x,) = args
    need_float(x)
    if any(d != 1 for d in x.shape):
        raise ShapeError(f"only a 1x1 result can become a scalar, got {fmt(x)}")
    return x.dtype, ()


def _matmul_note(s, pos):
    """The notes' block rule with the operands' names: for Y = W X, ∂L/∂W = ∂L/∂Y Xᵀ and
    ∂L/∂X = Wᵀ ∂L/∂Y (an outer product when X is a vector); for a vector on the left,
    y = x W, ∂L/∂x = W ∂L/∂y and ∂L/∂W = x ∂L/∂yᵀ; for a dot product ∂L/∂a = ∂L/∂y b."""
    (a, b), y = (v.name for v in s.args), s.out.name
    if s.args[0].rank == 2:                  # matrix-matrix or matrix-vector
        rules = (f"∂L/∂{a} = ∂L/∂{y} {b}ᵀ", f"∂L/∂{b} = {a}ᵀ ∂L/∂{y}")
    elif s.args[1].rank == 2:                # vector-matrix
        rules = (f"∂L/∂{a} = {b} ∂L/∂{y}", f"∂L/∂{b} = {a} ∂L/∂{y}ᵀ")
    else:                                    # dot product
        rules = (f"∂L/∂{a} = ∂L/∂{y} {b}", f"∂L/∂{b} = ∂L/∂{y} {a}")
    return "matmul: " + rules[pos]


# spelled `a @ b` in specs; with an array result, BLAS writes a new array (or into `out`)
register("matmul", _matmul_rule, _matmul_vjp, _matmul_note, family="linalg", symbol="@", fresh=True,
         into="np.dot", jvp=bilinear_jvp)
register("transpose", _transpose_rule, lambda b, s, g: [b.emit("transpose", g)],
         "transpose: transposes g", family="linalg", spelling="transpose", operands=("A",), view=True,
         linear=(0,))
register("outer", _outer_rule,
         lambda b, s, g: [b.emit("matmul", g, s.args[1]), b.emit("matmul", s.args[0], g)],
         "outer: d(abᵀ) = G b, Gᵀ a", helpers=("outer",), family="linalg", into="_outer_into",
         jvp=bilinear_jvp)
register("item", _item_rule, lambda b, s, g: [b.emit("expand", g, s.args[0])],
         "item: fills a 1x1 array with g", family="linalg", linear=(0,))


# ------------------------------------------------------------ trace (issue 6: SymPy's Trace)
def _trace_rule(args, attrs):
    (x,) = args
    need_float(x)
    if x.rank != 2 or x.shape[0] != x.shape[1]:
        raise ShapeError(f"trace needs a square matrix, got {fmt(x)}")
    return x.dtype, ()


def _eye_rule(args, attrs):
    g, like = args
    _trace_rule([like], attrs)
    if g.shape != ():
        raise ShapeError(f"eye scales the identity by a scalar, got {fmt(g)}")
    return float_dtype(g, like), like.shape


register("trace", _trace_rule, lambda b, s, g: [b.emit("eye", g, s.args[0])],
         "trace: d tr(X) = g I", family="linalg", linear=(0,))
register("eye", _eye_rule, lambda b, s, g: [b.emit("trace", g), None],
         "eye: the trace of G", family="linalg", linear=(0,))

"""Automatic differentiation on the IR, by the op table's rules.

* :mod:`.reverse`: reverse mode -- :func:`grad` (the gradient of a scalar output, the adjoint
  sweep seeded with 1) and :func:`vjp` (the adjoint sweep of every float output, seeded with
  cotangent inputs);
* :mod:`.forward`: forward mode -- :func:`jvp` (tangent statements, seeded with tangent inputs);
* :mod:`.derivatives`: their compositions, one IR function per derivative a module offers
  (JVP, VJP, Jacobians by columns or rows, Hessian-vector products by forward over reverse,
  Hessians).
"""
from .forward import jvp
from .reverse import Step, grad, note_of, vjp

__all__ = ["grad", "vjp", "jvp", "Step", "note_of"]

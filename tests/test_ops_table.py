"""The op table is complete: every op has a shape rule, a template fragment,
and (unless it is a mask/label op) an adjoint rule with a note."""
import pytest

from gradc.codegen import _family
from gradc.ops import OPS

NOT_DIFFERENTIABLE = {"const", "sign", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_not",
                      "size", "pick_vjp", "softmax_cross_entropy_vjp", "max_pool_vjp", "maxout_vjp",
                      "lp_pool_vjp", "logavg_pool_vjp", "svm_hinge_vjp", "sinc_vjp", "lambertw_vjp"}


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_has_template_fragment(name):
    op = OPS[name]
    if name != "const":                      # constants are inlined as literals
        assert hasattr(_family(op.family), name), f"templates/ops/{op.family}.j2 lacks macro {name}"
    for helper in op.helpers:
        assert hasattr(_family(op.family), f"helper_{helper}")


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_adjoint_rule_declared(name):
    op = OPS[name]
    if name in NOT_DIFFERENTIABLE:
        assert op.vjp is None
    else:
        assert op.vjp is not None and (op.note or name == "alias"), f"{name} needs an adjoint rule and a note"

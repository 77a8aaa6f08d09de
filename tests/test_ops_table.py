"""The op table is complete: every op has a shape rule, a template fragment,
and (unless it is a mask/label op) an adjoint rule with a note; and every op has the
traits its kind implies (issue 10: the traits on the entry replace the lists kept elsewhere)."""
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

import jinja2
import numpy as np
import pytest

from gradc.frontends.exprlang import FUNCTIONS
from gradc.ops import OPS

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@lru_cache(maxsize=None)
def _family(name: str):
    """The macros of ``templates/ops/<name>.j2`` (an environment of the test's own, so the
    templates are checked whatever the printer)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined)
    env.filters["pyrepr"] = repr
    return env.get_template(f"ops/{name}.j2").module

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


# ------------------------------------------------------------------ traits (issue 10)
#: Elementwise ops deliberately without a spec function: operators (+ - * / ** unary -,
#: comparisons), `alias`, masks' logic (only the compiler emits it) and adjoint helpers.
NOT_SPELLED = {"alias", "add", "sub", "mul", "div", "neg", "powc", "pow", "lt", "le", "gt", "ge",
               "logical_and", "logical_or", "logical_not", "sinc_vjp", "lambertw_vjp"}
#: Sample constant attributes for rendering a macro.
ATTRS = {"slope": 0.2, "alpha": 1.5, "p": 3.0, "n": 1, "h0": 0.5}
MASK_OPERANDS = {"logical_and": 2, "logical_or": 2, "logical_not": 1, "where": 1}


def _arity(name: str) -> int:
    """The macro's operand count; a variadic op's macro takes its operands as ``varargs``: 1 (the list)."""
    macro = getattr(_family(OPS[name].family), name)
    return len(macro.arguments) - 1 + (1 if macro.catch_varargs else 0)


def _scalar_code(name: str, args: list, elem: bool = True, **attrs) -> str:
    """The op's macro rendered as a loop renders one element: every operand a scalar name."""
    op = OPS[name]
    o = SimpleNamespace(rank=0, arg_ranks=[0] * len(args),
                        arg_dtypes=["bool" if isinstance(a, bool) else "f64" for a in args], dtype="f64",
                        elem=elem, lit=lambda x: repr(float(x)), cast=lambda e: e, op=op, **attrs)
    names = [f"a{k}" for k in range(len(args))]
    return str(getattr(_family(op.family), name)(o, *names)).strip()


def _scalar_args(name: str) -> list:
    n = _arity(name)
    masks = MASK_OPERANDS.get(name, 0)
    return [True, False][:masks] + [0.7, 1.3, -0.4][:n - masks]


def test_traits_are_consistent():
    """What each trait implies: a kernel or a C call is element code of a loop op; a rollable
    op is loopable; an op a loop computes element by element is elementwise, and the other loop
    kinds are the sums, the zero-padding scatter, the broadcast and the alias; the SymPy
    functions and comparisons are elementwise; `fresh` results are new arrays, `into` writes products."""
    assert {n: op.loop for n, op in OPS.items() if op.loop not in (True, False)} == \
        {"alias": "alias", "expand": "broadcast", "sum": "reduce", "sum_to": "reduce", "unslice": "scatter"}
    for name, op in OPS.items():
        if op.kernel or op.scalar_call is not None:
            assert op.loop is True, name
        if op.rollable:
            assert op.loop in (True, "alias"), name
        if op.loop is True:
            assert op.elementwise, name
        if op.family in ("functions", "select"):
            assert op.elementwise, name
        if op.kernel:
            assert "vmath" in op.helpers, name
    # fresh: a matrix product, and the convolution family's helpers (each returns a new array)
    assert {n for n, op in OPS.items() if op.fresh} == {"matmul"} | {
        n for n, op in OPS.items() if op.family == "conv" and n not in ("reshape", "flatten")}
    assert {n: op.into for n, op in OPS.items() if op.into} == {"matmul": "np.dot", "outer": "_outer_into"}
    assert "def _outer_into(" in str(_family("linalg").helper_outer())


def test_every_elementwise_op_is_spelled_or_deliberately_not():
    """A new elementwise op must say its spec spelling (or be added here, on purpose)."""
    unspelled = {n for n, op in OPS.items() if op.elementwise and op.spelling is None}
    assert unspelled == NOT_SPELLED


@pytest.mark.parametrize("name", sorted(n for n, op in OPS.items() if op.spelling))
def test_spelling_matches_the_macro(name):
    """The spec function of a spelled op takes as many operands as its macro (the rest are
    constants, passed as attributes the shape rule checks), and is callable by that name."""
    op = OPS[name]
    assert _arity(name) == len(op.operands), (op.operands, _arity(name))
    for spelled in (op.spelling, *op.aliases):
        assert FUNCTIONS[spelled].operands == op.operands
        assert FUNCTIONS[spelled].consts == op.consts and FUNCTIONS[spelled].keywords == op.keywords


@pytest.mark.parametrize("name", sorted(n for n, op in OPS.items() if op.loop in (True, "alias")))
def test_loop_op_macro_renders_scalar_code(name):
    """``loop=True`` (and the alias): with every operand a scalar and ``o.elem`` set, the macro is scalar Python
    code; evaluated (the element kernels stood in by NumPy) it gives a scalar, and the entry's
    constant-folding function's value where it has one."""
    args = _scalar_args(name)
    code = _scalar_code(name, args, **{k: v for k, v in ATTRS.items() if k in ("slope", "alpha", "p")})
    env = {"np": np, "_exp1": np.exp, "_tanh1": np.tanh, "_sigmoid1": lambda x: 1 / (1 + np.exp(-x))}
    env.update((f"a{k}", a) for k, a in enumerate(args))
    value = eval(code, env)                         # noqa: S307  (the op's own template, test data)
    assert np.ndim(value) == 0, code
    fold = OPS[name].fold
    if fold is not None:
        assert value == pytest.approx(fold(*args), rel=1e-15), code


def test_powc_forms_live_on_the_entry():
    """The exponents with code of their own are the powc entry's ``forms``: the macro renders
    them (x * x, np.sqrt(x), 1 / x), the entry's ``scalar_call`` is false for them only, and
    the values agree with x ** p."""
    op = OPS["powc"]
    forms = dict(op.forms)
    assert set(forms) == {2.0, 0.5, -1.0}
    for p in (*forms, 3.0, -2.0, 1.5):
        code = _scalar_code("powc", [1.7], p=p)
        assert eval(code, {"np": np, "a0": 1.7}) == pytest.approx(1.7 ** p, rel=1e-15)
        assert op.scalar_call(SimpleNamespace(attr={"p": p})) == (p not in forms)
        assert ("**" in code) == (p not in forms), code


def test_spec_spellings_come_from_the_table():
    """The spec language's functions are exactly the table's spellings and aliases."""
    spelled = {s for op in OPS.values() if op.spelling for s in (op.spelling, *op.aliases)}
    assert set(FUNCTIONS) == spelled and "lgamma" in FUNCTIONS


def test_printer_reads_the_powc_forms_from_the_entry(monkeypatch):
    """The code printed for ``x ** p`` follows the powc entry's ``forms`` and nothing else: with
    3 declared a square (a probe, not math), ``x ** 3`` prints as ``x * x``."""
    import dataclasses
    import re

    from gradc.pipeline import build

    monkeypatch.setitem(OPS, "powc", dataclasses.replace(OPS["powc"], forms=((3.0, "square"),)))
    spec = "\n".join(["[model]", 'name = "probe"', "[inputs]", "x = { shape = [] }", "[graph]",
                      'out = "x ** 3"', "[output]", 'value = "out"', 'wrt = ["x"]'])
    code = build(spec).code
    assert re.search(r"^ +out = x \* x$", code, re.M), code


#: ops whose result is a mask: no tangent at all
MASKS = {"lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_not"}


@pytest.mark.parametrize("name", sorted(OPS))
def test_every_op_with_a_float_result_has_a_jvp_rule(name):
    """Forward mode and Hessians (issue 11) need a JVP rule for every op that can carry a tangent,
    the adjoint-only helper ops (``*_vjp``) included: the entry's own ``jvp``, or one derived from
    its ``linear`` or ``elementwise`` traits. Only the masks have none."""
    from gradc.ops import jvp_rule
    rule = jvp_rule(OPS[name])
    assert (rule is None) == (name in MASKS), name


def test_an_op_without_a_jvp_rule_is_refused_by_name_in_forward_mode(monkeypatch):
    """A float op with no rule on a tangent's path raises UnsupportedError naming it, never a zero."""
    import dataclasses

    import sympy as sp

    from gradc import UnsupportedError
    from gradc.ad import jvp
    from gradc.frontends.sympy import lower

    x = sp.Symbol("x")
    lowered = lower(sp.exp(x) * 2, [x])
    monkeypatch.setitem(OPS, "exp", dataclasses.replace(OPS["exp"], elementwise=False))   # no rule derivable
    with pytest.raises(UnsupportedError, match="exp has no forward-mode"):
        jvp(lowered.fn, lowered.wrt)

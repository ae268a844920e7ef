"""A fast reader for the TVMScript the kernel generators write (:class:`._common.Src`).

``tvm.script.from_source`` evaluates every expression node through its doc-AST evaluator in Python, about 3 ms per
line: a sparse kernel with in-register transposes (150-300 lines) took 0.2-1 s, 40% of a cold compile. This reader
walks Python's own AST of the same text and makes the same IRBuilder calls the parser makes (``T.prim_func`` /
``T.arg`` / loop frames / ``T.If`` / ``T.buffer_store`` / named bindings), evaluating each expression as one
compiled Python expression in which the operators ``+ - * // % < <= == and or not ...`` go through the parser's own
operator table (:func:`tvm.script.parser.core.evaluator._eval_op`), so constants get the parser's dtypes.

It reads a subset: one ``@T.prim_func`` with annotated parameters; ``for``, ``if``/``else``, assignments to a name
(frames, buffers, ``T.Bind`` vars) or to a buffer element, and expression statements. Anything else raises
:class:`Unsupported`, and :func:`._common.parse` falls back to TVMScript's parser. The result passes the same
well-formedness checks, and the tests compare it structurally with the parser's on every kernel family.
"""

from __future__ import annotations

import ast
import functools
from typing import Any

from .._tvm import IRBuilder, IRBuilderFrame, script_doc, script_eval_op, tir_builder, tvm


class Unsupported(Exception):
    """The text uses TVMScript this reader does not handle (the caller falls back to the parser)."""


_BIN = {ast.Add: "Add", ast.Sub: "Sub", ast.Mult: "Mult", ast.Div: "Div", ast.FloorDiv: "FloorDiv",
        ast.Mod: "Mod", ast.Pow: "Pow", ast.LShift: "LShift", ast.RShift: "RShift", ast.BitOr: "BitOr",
        ast.BitXor: "BitXor", ast.BitAnd: "BitAnd"}
_UNARY = {ast.USub: "USub", ast.UAdd: "UAdd", ast.Not: "Not", ast.Invert: "Invert"}
_CMP = {ast.Eq: "Eq", ast.NotEq: "NotEq", ast.Lt: "Lt", ast.LtE: "LtE", ast.Gt: "Gt", ast.GtE: "GtE"}


def _op(name: str, *values):
    return script_eval_op(getattr(script_doc, name)(), list(values))


def _and_or(name: str, first, *rest_thunks):
    """Short-circuit like the parser: a Python bool decides alone, otherwise the parser's And/Or."""
    value = first
    for thunk in rest_thunks:
        if isinstance(value, bool):
            if name == "And" and not value:
                return value
            if name == "Or" and value:
                return value
        value = _op(name, value, thunk())
    return value


class _Operators(ast.NodeTransformer):
    """Rewrite operators into calls of :func:`_op` / :func:`_and_or`; refuse constructs the reader does not own."""

    def visit_BinOp(self, node):
        self.generic_visit(node)
        return _call("__sf_op", [ast.Constant(_BIN[type(node.op)]), node.left, node.right], node)

    def visit_UnaryOp(self, node):
        self.generic_visit(node)
        return _call("__sf_op", [ast.Constant(_UNARY[type(node.op)]), node.operand], node)

    def visit_Compare(self, node):
        self.generic_visit(node)
        if len(node.ops) != 1:
            raise Unsupported("chained comparison")
        return _call("__sf_op", [ast.Constant(_CMP[type(node.ops[0])]), node.left, node.comparators[0]], node)

    def visit_BoolOp(self, node):
        self.generic_visit(node)
        name = "And" if isinstance(node.op, ast.And) else "Or"
        thunks = [ast.Lambda(args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[],
                                                defaults=[]), body=v) for v in node.values[1:]]
        return _call("__sf_and_or", [ast.Constant(name), node.values[0], *thunks], node)

    def _refuse(self, node):
        raise Unsupported(type(node).__name__)

    visit_IfExp = visit_Slice = visit_Lambda = visit_ListComp = visit_DictComp = visit_SetComp = _refuse
    visit_GeneratorExp = visit_Starred = visit_NamedExpr = visit_Await = visit_Yield = _refuse


def _call(name: str, args: list, like: ast.AST) -> ast.Call:
    return ast.copy_location(ast.Call(func=ast.Name(name, ast.Load()), args=args, keywords=[]), like)


@functools.lru_cache(maxsize=65536)
def _compiled(source: str):
    """(code, whether it holds lambdas: their bodies see globals only, so those evaluate in one merged dict)."""
    tree = ast.parse(source, mode="eval")
    has_bool_op = any(isinstance(n, ast.BoolOp) for n in ast.walk(tree))
    tree = ast.fix_missing_locations(_Operators().visit(tree))
    return compile(tree, "<sparseforge kernel>", "eval"), has_bool_op


class _Reader:
    def __init__(self, text: str, extra_vars: dict[str, Any]):
        self.lines = text.split("\n")
        self.globals = {"__builtins__": __builtins__, "__sf_op": _op, "__sf_and_or": _and_or, **extra_vars}

    def segment(self, node: ast.AST) -> str:
        """The source text of ``node`` (``ast.get_source_segment`` splits the whole text on every call)."""
        first, last = node.lineno - 1, node.end_lineno - 1
        if first == last:
            # col offsets count UTF-8 bytes; the generated text is ASCII
            return self.lines[first][node.col_offset:node.end_col_offset]
        parts = [self.lines[first][node.col_offset:], *self.lines[first + 1:last],
                 self.lines[last][:node.end_col_offset]]
        return "\n".join(parts)

    def eval(self, node: ast.expr, scope: dict[str, Any]):
        source = self.segment(node)
        code, merged = _compiled(source)
        if merged:
            return eval(code, {**self.globals, **scope})  # noqa: S307 - our own generated kernel text
        return eval(code, self.globals, scope)  # noqa: S307

    # ------------------------------------------------------------------------------------------ statements
    def function(self, node: ast.FunctionDef) -> None:
        decorators = [self.segment(d) for d in node.decorator_list]
        if decorators != ["T.prim_func"] or node.returns is not None:
            raise Unsupported("decorator or return annotation")
        args = node.args
        if args.vararg or args.kwarg or args.kwonlyargs or args.posonlyargs or args.defaults:
            raise Unsupported("parameter kinds")
        scope: dict[str, Any] = {}
        with tir_builder.prim_func(is_private=False, s_tir=False, persistent=False):
            tir_builder.func_name(node.name)
            for arg in args.args:
                if arg.annotation is None:
                    raise Unsupported("unannotated parameter")
                ann = self.eval(arg.annotation, scope)
                if callable(ann) and not isinstance(ann, tvm.ir.Expr):
                    ann = ann()
                scope[arg.arg] = tir_builder.arg(arg.arg, ann)
            self.body(node.body, scope)

    def body(self, stmts: list[ast.stmt], scope: dict[str, Any]) -> None:
        for stmt in stmts:
            kind = type(stmt)
            if kind is ast.Assign:
                self.assign(stmt, scope)
            elif kind is ast.For:
                self.loop(stmt, scope)
            elif kind is ast.If:
                self.branch(stmt, scope)
            elif kind is ast.Expr:
                self.expression(stmt, scope)
            elif kind is ast.Pass:
                continue
            else:
                raise Unsupported(kind.__name__)

    def assign(self, node: ast.Assign, scope: dict[str, Any]) -> None:
        if len(node.targets) != 1:
            raise Unsupported("multiple targets")
        target = node.targets[0]
        value = self.eval(node.value, scope)
        if isinstance(target, ast.Subscript):
            if isinstance(target.slice, ast.Slice):
                raise Unsupported("slice store")
            buffer = self.eval(target.value, scope)
            if isinstance(target.slice, ast.Tuple):
                indices = [self.eval(e, scope) for e in target.slice.elts]
            else:
                indices = self.eval(target.slice, scope)
            tir_builder.buffer_store(buffer, value, indices)
            return
        if not isinstance(target, ast.Name) or target.id in scope:
            raise Unsupported("assignment to an existing name or a pattern")
        name = target.id
        if isinstance(value, IRBuilderFrame):
            value.add_callback(functools.partial(value.__exit__, None, None, None))
            bound = value.__enter__()
            IRBuilder.name(name, bound)
        elif tvm.tirx.is_buffer_var(value) or isinstance(value, tvm.ir.Var):
            IRBuilder.name(name, value)
            bound = value
        else:
            raise Unsupported("scalar assignment")
        scope[name] = bound

    def loop(self, node: ast.For, scope: dict[str, Any]) -> None:
        if node.orelse:
            raise Unsupported("for-else")
        frame = self.eval(node.iter, scope)
        if not isinstance(frame, tir_builder.frame.ForFrame):
            raise Unsupported("loop over something other than a T loop")
        inner = dict(scope)
        with frame as iters:
            if isinstance(node.target, ast.Name):
                names, values = [node.target.id], [iters]
            elif isinstance(node.target, ast.Tuple) and all(isinstance(e, ast.Name) for e in node.target.elts):
                names, values = [e.id for e in node.target.elts], list(iters)
            else:
                raise Unsupported("loop target")
            if len(names) != len(values):
                raise Unsupported("loop arity")
            for name, var in zip(names, values):
                if not isinstance(var, tvm.ir.Var):
                    raise Unsupported("loop variable")
                IRBuilder.name(name, var)
                inner[name] = var
            self.body(node.body, inner)

    def branch(self, node: ast.If, scope: dict[str, Any]) -> None:
        predicate = self.eval(node.test, scope)
        if isinstance(predicate, bool):
            # Python ``if`` on a compile-time bool: no scope of its own (as in the parser)
            self.body(node.body if predicate else node.orelse, scope)
            return
        if not (tvm.ir.is_prim_expr(predicate) or isinstance(predicate, tvm.tirx.expr.ExprOp)):
            raise Unsupported("if condition")
        with tir_builder.If(predicate):
            with tir_builder.Then():
                self.body(node.body, dict(scope))
            if node.orelse:
                with tir_builder.Else():
                    self.body(node.orelse, dict(scope))

    def expression(self, node: ast.Expr, scope: dict[str, Any]) -> None:
        value = self.eval(node.value, scope)
        if value is None:
            return
        if isinstance(value, IRBuilderFrame):
            value.add_callback(functools.partial(value.__exit__, None, None, None))
            value.__enter__()
        elif tvm.ir.is_prim_expr(value):
            tir_builder.evaluate(value)
        else:
            raise Unsupported(f"expression statement of type {type(value).__name__}")


def read_prim_func(text: str, extra_vars: dict[str, Any]):
    """The PrimFunc of ``text`` (one ``@T.prim_func``), built like ``tvm.script.from_source`` would build it;
    raises :class:`Unsupported` for text outside the subset."""
    if not text.isascii():
        raise Unsupported("non-ASCII text")
    try:
        module = ast.parse(text)
    except SyntaxError as exc:
        raise Unsupported(f"syntax: {exc}") from exc
    if len(module.body) != 1 or not isinstance(module.body[0], ast.FunctionDef):
        raise Unsupported("not one function")
    reader = _Reader(text, extra_vars)
    with IRBuilder() as builder:
        reader.function(module.body[0])
    func = builder.get()
    check = tvm.IRModule.from_expr(func)
    tvm.s_tir.analysis.verify_well_formed(check)
    tvm.tirx.analysis.verify_tirx_well_formed(func)
    return func

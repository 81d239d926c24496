"""detkit stands on the public API of Lightning, PyTorch and torchvision: no ``_``-prefixed module, name or member of theirs.

A walk over the syntax tree of every file under ``detkit/`` reports

(a) an import of a private module of those libraries (``torchvision.models._utils``) or of a
    private name from them (``from torch import _foreach_norm``);
(b) a private attribute reached from one of their names: an imported name (``torch._foreach_norm``)
    or a parameter annotated with one (``trainer: Trainer`` then ``trainer._x``), also through
    ``getattr(obj, "_x")``;
(c) in a detkit class that derives from one of their classes (directly or through detkit classes),
    a ``self._x`` / ``super()._x`` / ``getattr(self, "_x")`` use, or a method or class attribute
    ``_x``, where ``_x`` is a private member that a library class of its bases defines or uses
    (read from their source): ``ModelCheckpoint._save_last_checkpoint``, ``nn.Module._parameters``.

Dunder names (``__init__``, ``__version__``) are public. The first tests show on small sources that
each rule catches its case; the last one walks detkit.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import textwrap
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "detkit"
LIBRARIES = {"lightning", "lightning_fabric", "lightning_utilities", "pytorch_lightning", "torch", "torchvision"}


def is_private(name: str) -> bool:
    """``_x`` but neither ``_`` nor a dunder ``__x__``."""
    return len(name) > 1 and name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def is_library(dotted: str) -> bool:
    return dotted.split(".")[0] in LIBRARIES


def lookup(dotted: str) -> Any:
    """The object a dotted path names (``torch.nn.Module``), or ``None``."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for part in parts[cut:]:
                obj = getattr(obj, part)
        except AttributeError:
            return None
        return obj
    return None


@lru_cache(maxsize=None)
def library_private_names(cls: type) -> frozenset[str]:
    """Private names that the library classes of ``cls``'s MRO define or use in their source."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if not is_library(getattr(klass, "__module__", "") or ""):
            continue
        names.update(name for name in vars(klass) if is_private(name))
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and is_private(node.attr):
                names.add(node.attr)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and is_private(node.name):
                names.add(node.name)
    return frozenset(names)


# ---- modules of detkit ------------------------------------------------------------------------------
def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_file(name: str) -> Path | None:
    base = PACKAGE.parent.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imports_of(tree: ast.AST, module: str, is_package: bool) -> dict[str, str]:
    """Local name -> dotted path it is bound to, for every import anywhere in ``tree``."""
    package = module if is_package else module.rpartition(".")[0]
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    root = alias.name.split(".")[0]
                    bound[root] = root
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                bound[alias.asname or alias.name] = f"{base}.{alias.name}"
    return bound


class Module:
    """One parsed source: its tree, imports and classes."""

    def __init__(self, source: str, name: str, is_package: bool = False) -> None:
        self.name = name
        self.tree = ast.parse(source)
        self.imports = imports_of(self.tree, name, is_package)
        self.classes = {node.name: node for node in self.tree.body if isinstance(node, ast.ClassDef)}


@lru_cache(maxsize=None)
def detkit_module(name: str) -> Module | None:
    path = module_file(name)
    return Module(path.read_text(), name, path.name == "__init__.py") if path else None


def dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of attributes on a name, else ``None``."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def library_bases(module: Module, cls: ast.ClassDef, depth: int = 0) -> list[type]:
    """The library classes ``cls`` derives from, directly or through detkit classes."""
    found: list[type] = []
    for base in cls.bases:
        path = dotted(base)
        if path is None or depth > 20:
            continue
        head, _, rest = path.partition(".")
        if not rest and head in module.classes:
            found += library_bases(module, module.classes[head], depth + 1)
            continue
        target = module.imports.get(head)
        if target is None:
            continue
        full = f"{target}.{rest}" if rest else target
        if is_library(full):
            obj = lookup(full)
            if isinstance(obj, type):
                found.append(obj)
        elif full.startswith("detkit."):
            found += detkit_bases(full, depth + 1)
    return found


def detkit_bases(full: str, depth: int) -> list[type]:
    """Library bases of the detkit class named ``full`` (followed through re-exports)."""
    owner, _, name = full.rpartition(".")
    module = detkit_module(owner)
    if module is None or depth > 20:
        return []
    if name in module.classes:
        return library_bases(module, module.classes[name], depth + 1)
    target = module.imports.get(name)
    return detkit_bases(target, depth + 1) if target and target.startswith("detkit.") else []


# ---- the rules ----------------------------------------------------------------------------------------
def _annotation_names(node: ast.AST | None) -> list[str]:
    if node is None:
        return []
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            node = ast.parse(node.value, mode="eval").body
        except SyntaxError:
            return []
    return [path for sub in ast.walk(node) if (path := dotted(sub)) is not None]


class Checker(ast.NodeVisitor):
    """Collects ``"line: rule: what"`` for every use of a library's private member in one module."""

    def __init__(self, module: Module) -> None:
        self.module = module
        self.found: list[str] = []
        self.typed: list[set[str]] = [set()]  # per function: parameters annotated with a library name
        self.owner: list[tuple[str | None, frozenset[str]]] = [(None, frozenset())]  # (self name, privates)

    def report(self, node: ast.AST, rule: str, what: str) -> None:
        self.found.append(f"{self.module.name}:{node.lineno}: ({rule}) {what}")

    def library_path(self, name: str) -> str | None:
        target = self.module.imports.get(name)
        return target if target and is_library(target) else None

    def library_rooted(self, node: ast.AST) -> bool:
        while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
            node = node.func if isinstance(node, ast.Call) else node.value
        return isinstance(node, ast.Name) and (self.library_path(node.id) is not None or node.id in self.typed[-1])

    # (a) imports
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if is_library(alias.name) and any(is_private(part) for part in alias.name.split(".")):
                self.report(node, "a", f"import {alias.name}")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module and is_library(node.module):
            for alias in node.names:
                if any(is_private(part) for part in [*node.module.split("."), alias.name]):
                    self.report(node, "a", f"from {node.module} import {alias.name}")

    # (b) and (c) members
    def visit_Attribute(self, node: ast.Attribute) -> None:
        if is_private(node.attr):
            self_name, privates = self.owner[-1]
            value = node.value
            if self.library_rooted(value):
                self.report(node, "b", f"{dotted(node) or '...' + node.attr}")
            elif node.attr in privates and isinstance(value, ast.Name) and value.id == self_name:
                self.report(node, "c", f"{value.id}.{node.attr} (a member of the library base class)")
            elif node.attr in privates and isinstance(value, ast.Call) and dotted(value.func) == "super":
                self.report(node, "c", f"super().{node.attr} (a member of the library base class)")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        reflective = dotted(node.func) in ("getattr", "setattr", "hasattr", "delattr")
        if reflective and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
            name = node.args[1].value
            if isinstance(name, str) and is_private(name):
                self_name, privates = self.owner[-1]
                target = node.args[0]
                if self.library_rooted(target):
                    self.report(node, "b", f"{node.func.id}(..., {name!r})")
                elif name in privates and isinstance(target, ast.Name) and target.id == self_name:
                    self.report(node, "c", f"{node.func.id}({target.id}, {name!r}) (a member of the library base class)")
        self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        privates: set[str] = set()
        for base in library_bases(self.module, node):
            privates |= library_private_names(base)
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name in privates:
                self.report(item, "c", f"def {node.name}.{item.name} (overrides a member of the library base class)")
            targets = item.targets if isinstance(item, ast.Assign) else [item.target] if isinstance(item, ast.AnnAssign) else []
            for target in targets:
                if isinstance(target, ast.Name) and target.id in privates:
                    self.report(item, "c", f"{node.name}.{target.id} (a member of the library base class)")
        self.owner.append(("", frozenset(privates)))
        self.generic_visit(node)
        self.owner.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        args = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
        typed = {
            arg.arg for arg in args if any(self.library_path(name.split(".")[0]) for name in _annotation_names(arg.annotation))
        }
        outer_self, privates = self.owner[-1]
        static = any(dotted(decorator) == "staticmethod" for decorator in node.decorator_list)
        in_method = outer_self == "" and args and not static  # in a class body: the first parameter is self
        self.owner.append((args[0].arg if in_method else outer_self, privates) if in_method or outer_self else (None, frozenset()))
        self.typed.append(self.typed[-1] | typed)
        self.generic_visit(node)
        self.typed.pop()
        self.owner.pop()

    visit_AsyncFunctionDef = visit_FunctionDef


def violations(source: str, name: str = "detkit.example", is_package: bool = False) -> list[str]:
    checker = Checker(Module(source, name, is_package))
    checker.visit(checker.module.tree)
    return checker.found


# ---- each rule catches its case --------------------------------------------------------------------
@pytest.mark.parametrize(
    "source, rule",
    [
        ("from torchvision.models._utils import IntermediateLayerGetter", "(a)"),
        ("import torch._dynamo", "(a)"),
        ("from torch import _foreach_norm", "(a)"),
        ("from lightning.pytorch.utilities import _pytree", "(a)"),
        ("import torch\nnorms = torch._foreach_norm([])", "(b)"),
        ("from torch import nn\nnn.modules.module._global_forward_hooks", "(b)"),
        ("import torch\nf = getattr(torch, '_foreach_mul_')", "(b)"),
        ("from lightning.pytorch import Trainer\ndef f(trainer: Trainer):\n    return trainer._checkpoint_connector", "(b)"),
        ("import lightning.pytorch as pl\ndef f(trainer: 'pl.Trainer | None'):\n    return trainer.strategy._launcher", "(b)"),
        (
            "from lightning.pytorch.callbacks import ModelCheckpoint\n"
            "class C(ModelCheckpoint):\n    def f(self, trainer):\n        return self._monitor_candidates(trainer)",
            "(c)",
        ),
        (
            "from lightning.pytorch.callbacks import ModelCheckpoint\n"
            "class C(ModelCheckpoint):\n    def _save_last_checkpoint(self, trainer, candidates):\n"
            "        super()._save_last_checkpoint(trainer, candidates)",
            "(c)",
        ),
        (
            "from lightning.pytorch.callbacks import WeightAveraging\n"
            "class C(WeightAveraging):\n    def teardown(self, trainer, module, stage):\n        self._average_model = None",
            "(c)",
        ),
        (
            "from lightning.pytorch.callbacks import ModelCheckpoint\n"
            "class C(ModelCheckpoint):\n    def f(self):\n        return getattr(self, '_defer_save_until_validation', False)",
            "(c)",
        ),
        ("from torch import nn\nclass B(nn.Module):\n    pass\nclass C(B):\n    def f(self):\n        return self._parameters", "(c)"),
        ("import torch\nclass C(torch.nn.Module):\n    _version = 2", "(c)"),
    ],
)
def test_each_rule_catches_its_case(source, rule):
    found = violations(source)
    assert found and all(rule in line for line in found), found


def test_public_members_and_detkit_privates_pass():
    source = textwrap.dedent(
        """
        import torch
        from torch import nn
        from lightning.pytorch import Trainer
        from lightning.pytorch.callbacks import ModelCheckpoint
        from torch.nn.utils import get_total_norm

        def _helper(trainer: Trainer, items):
            return trainer.num_training_batches, items._private, torch.__version__

        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self._records = []  # detkit's own
                self.__dict__

            def _own(self):
                return self._records, get_total_norm([], norm_type=2.0)

        class Keep(ModelCheckpoint):
            def on_train_start(self, trainer, pl_module):
                return self.best_model_path, self.every_n_epochs, super().on_train_start(trainer, pl_module)
        """
    )
    assert violations(source) == []


def test_detkit_uses_no_private_member_of_lightning_torch_or_torchvision():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += violations(path.read_text(), module_name(path), path.name == "__init__.py")
    assert not found, "private members of other libraries:\n" + "\n".join(found)

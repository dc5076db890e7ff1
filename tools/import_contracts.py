"""A contract type for import-linter: no module uses another module's private names.

``lint-imports`` (configuration: ``.importlinter``) loads this module (the repository root is
on its path) for the ``public_names`` contract. A name is private when it starts with one
underscore (``_fsync_directory``; dunders such as ``__version__`` are public). The contract
is broken by

* ``from openimagen.a import _name`` in any module other than ``openimagen.a`` itself,
* ``alias._name`` where ``alias`` is an imported openimagen module
  (``from openimagen.train import checkpoint as ckpt`` ... ``ckpt._sha256``),

and, for the code outside the package listed in ``outside`` (benchmarks, tools), which may
use only the public API, also by importing a name that a module's ``__all__`` leaves out.
import-linter's grimp graph records which modules import which, not the names they take,
so this contract reads the source files itself (with :mod:`ast`; nothing is imported).
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from pathlib import Path

from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


class PublicNamesContract(Contract):
    type_name = "public_names"

    root_package = fields.StringField()
    outside = fields.ListField(subfield=fields.StringField(), required=False)

    def check(self, graph, verbose: bool) -> ContractCheck:
        root = Path(importlib.util.find_spec(self.root_package).submodule_search_locations[0])
        # the project's own modules (the graph also holds external packages, by top-level name)
        modules = {m for m in graph.modules
                   if m == self.root_package or m.startswith(self.root_package + ".")}  # fmt: skip
        problems: list[str] = []
        for module in sorted(modules):
            path = _module_file(root, self.root_package, module)
            problems += _problems(path, module, modules, root, self.root_package, outside=False)
        for directory in self.outside or []:
            for path in sorted(Path(directory).rglob("*.py")):
                problems += _problems(path, None, modules, root, self.root_package, outside=True)
        return ContractCheck(kept=not problems, metadata={"problems": problems})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for problem in check.metadata["problems"]:
            output.print_error(f"- {problem}", bold=False)
            output.new_line()


def _module_file(root: Path, package: str, module: str) -> Path:
    parts = module.split(".")[1:]
    base = root.joinpath(*parts)
    return base / "__init__.py" if (base / "__init__.py").is_file() else base.with_suffix(".py")


def _resolve(node: ast.ImportFrom, module: str | None, is_package: bool) -> str:
    """The absolute module of ``from ... import`` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = (module or "").split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _problems(path: Path, module: str | None, modules: set[str], root: Path, package: str,
              *, outside: bool) -> Iterator[str]:  # fmt: skip
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    where = module or str(path)
    aliases: dict[str, str] = {}  # local name -> openimagen module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for name in node.names:
                if name.name in modules:
                    aliases[name.asname or name.name.split(".")[0]] = (
                        name.name if name.asname else name.name.split(".")[0]
                    )
                if any(is_private(part) for part in name.name.split(".")):
                    yield f"{where}:{node.lineno} imports the private module {name.name}"
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(node, module, path.name == "__init__.py")
            if source.split(".")[0] != package:
                continue
            public = _public_names(root, package, source) if outside else None
            for name in node.names:
                full = f"{source}.{name.name}"
                if full in modules:
                    aliases[name.asname or name.name] = full
                if is_private(name.name) and source != module:
                    yield f"{where}:{node.lineno} imports {name.name} from {source}"
                elif public is not None and name.name not in public and full not in modules:
                    yield (f"{where}:{node.lineno} imports {name.name} from {source}, "
                           "which its __all__ does not list")  # fmt: skip
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            owner = _dotted(node.value, aliases)
            if owner is not None and owner != module:
                yield f"{where}:{node.lineno} uses {owner}.{node.attr}"


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """The openimagen module an expression such as ``ckpt`` or ``openimagen.fileio`` names."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    if isinstance(node, ast.Attribute):
        owner = _dotted(node.value, aliases)
        return f"{owner}.{node.attr}" if owner is not None else None
    return None


def _public_names(root: Path, package: str, module: str) -> set[str] | None:
    """The names of ``module``'s static ``__all__``; None when it has none (any public name)."""
    path = _module_file(root, package, module)
    if not path.is_file():
        return None
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            try:
                return set(ast.literal_eval(node.value))
            except ValueError:
                return None
    return None

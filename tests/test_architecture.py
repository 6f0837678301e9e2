"""The package's shape: no module imports another package's private names (the layers themselves are checked by
``lint-imports`` with the contract in pyproject.toml)."""

import ast
import pathlib

import l2o_jax

ROOT = pathlib.Path(l2o_jax.__file__).parent
EXPERIMENTS = ROOT.parent / "experiments"


def _package(module: str) -> str:
    """``l2o_jax.optimizers.base`` -> ``l2o_jax.optimizers``; a top-level module is its own package."""
    return ".".join(module.split(".")[:2])


def _private_imports(path: pathlib.Path, module: str):
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.ImportFrom):
            continue
        source = node.module or ""
        if node.level:  # relative: resolve against the importing package
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            source = ".".join(base + ([source] if source else []))
        if not source.startswith("l2o_jax"):
            continue
        for alias in node.names:
            private = alias.name.startswith("_") and not alias.name.startswith("__")
            if private and _package(source) != _package(module):
                yield f"{path}:{node.lineno}: {module} imports {alias.name} from {source}"


def test_no_module_imports_a_private_name_of_another_package():
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        module = ".".join(("l2o_jax", *path.relative_to(ROOT).with_suffix("").parts)).removesuffix(".__init__")
        found += _private_imports(path, module)
    for path in sorted(EXPERIMENTS.rglob("*.py")):
        found += _private_imports(path, "experiments." + ".".join(path.relative_to(EXPERIMENTS).with_suffix("").parts))
    assert not found, "\n".join(found)


def test_the_check_finds_a_private_import(tmp_path):
    offender = tmp_path / "offender.py"
    offender.write_text("from l2o_jax.optimizers.base import _steps\nfrom l2o_jax.graphs import graph_spec\n")
    assert len(list(_private_imports(offender, "l2o_jax.features"))) == 1
    assert not list(_private_imports(offender, "l2o_jax.optimizers.graph"))

"""The package's import structure: every import points down the layer list, and none hides inside a
function or a TYPE_CHECKING block."""

import ast
import subprocess
import sys
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "genmodels"

# Top to bottom. A module may import from its own group and the groups below it, never above.
LAYERS = [
    ["__main__", "cli"],  # the command line
    ["commands"],  # what each command does
    ["dashboard"],  # optuna-dashboard on a study
    ["tuning.__init__", "tuning.study", "tuning.retrain", "tuning.report"],  # the study command and its results
    ["tuning.objective", "tuning.search"],  # one trial; samplers and pruners
    ["tuning.config", "tuning.storage"],  # the tuning config; the study's storage
    ["experiment", "compare", "export"],  # the one place that assembles a run; scoring two image sets
    ["runs"],  # reading run folders
    ["train"],  # the loop
    # around the loop: hooks, torchrun, what a run writes, the precision it runs at
    ["callbacks", "strategy", "recorder", "evaluation", "precision"],
    ["run_state"],  # a run's progress and result
    ["config", "tblog"],  # the run Config assembled from the sections below
    ["finetune"],  # the finetune section and its build step
    ["metrics.features", "metrics.quality", "metrics.contrastive", "metrics.classifier", "metrics.inception",
     "metrics.extractor", "metrics.augment", "metrics.knn",
     "metrics.download", "metrics.by_class"],
    ["models.__init__", "models.base", "models.vae", "models.gan", "models.gan_config", "models.gan_nets"],
    ["models.blocks", "models.resnet", "models.diffaugment", "models.gan_watch", "models.conditional"],
    ["data.__init__", "data.splits"],  # a data section -> a run's splits
    # one module per source format
    ["data.idx", "data.imagefolder", "data.cifar", "data.svhn", "data.stl10", "data.celeba"],
    ["data.config", "data.roots", "data.tensors"],
    ["checkpoint", "optim", "metrics.__init__", "metrics.frechet", "metrics.likelihood"],
    ["errors", "files", "runtime", "schema", "distributed", "syncbn", "images"],  # leaves
    ["__init__"],  # the package root imports nothing
]
RANK = {name: i for i, group in enumerate(LAYERS) for name in group}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    return ".".join(rel.parts)


def target(node: ast.ImportFrom | ast.Import, module: str) -> list[str]:
    """The genmodels modules an import statement loads, as names in LAYERS."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative import
            parts = module.split(".")[: -node.level]
            base = ".".join(["genmodels", *parts, base] if base else ["genmodels", *parts])
        names = [base] + [f"{base}.{a.name}" for a in node.names]
    out = []
    for name in names:
        if name == "genmodels":
            out.append("__init__")
        elif name.startswith("genmodels."):
            short = name[len("genmodels."):]
            if short in RANK:
                out.append(short)
            elif f"{short}.__init__" in RANK:
                out.append(f"{short}.__init__")
    return out


def imports(path: Path):
    """(line, imported module, inside a function?, inside TYPE_CHECKING?) for every import."""
    tree = ast.parse(path.read_text())
    found = []

    def visit(node, in_function=False, in_type_checking=False):
        for child in ast.iter_child_nodes(node):
            func = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            tc = in_type_checking or (isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for name in target(child, module_name(path)):
                    found.append((child.lineno, name, in_function, in_type_checking))
            visit(child, func, tc)

    visit(tree)
    return found


def modules():
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    assert sorted(module_name(p) for p in modules()) == sorted(RANK)


def test_imports_point_down():
    wrong = []
    for path in modules():
        here = module_name(path)
        for line, name, in_function, in_type_checking in imports(path):
            where = f"{path.relative_to(REPO)}:{line} imports {name}"
            if RANK[name] < RANK[here]:
                wrong.append(f"{where}, a layer above it")
            # __main__ imports the CLI inside main() to catch Ctrl-C during start-up (its docstring).
            if in_function and here != "__main__":
                wrong.append(f"{where} inside a function")
            if in_type_checking:
                wrong.append(f"{where} under TYPE_CHECKING")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    graph = {module_name(p): {n for _, n, _, _ in imports(p) if n != module_name(p)} for p in modules()}
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack + [node, nxt]))
            if nxt not in state:
                visit(nxt, stack + [node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])


def test_models_import_no_training_machinery():
    code = ("import sys, genmodels.models; "
            "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in ('optuna', 'tensorboard') "
            "or m in ('genmodels.train', 'genmodels.tuning.objective', 'genmodels.finetune', 'genmodels.cli', "
            "'genmodels.experiment', 'torch.utils.tensorboard'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_package_files_are_short():
    long = [f"{p.relative_to(REPO)}: {n} lines" for p in modules() if (n := len(p.read_text().splitlines())) > 300]
    assert not long, long


def test_the_trainer_class_is_short():
    tree = ast.parse((PACKAGE / "train.py").read_text())
    trainer = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Trainer")
    assert trainer.end_lineno - trainer.lineno + 1 < 250

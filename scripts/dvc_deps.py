"""The code deps of every stage in dvc.yaml, computed from the imports.

A stage depends on exactly the rgsyn files that its command runs, one file per entry, so that an
edit to one module makes exactly the stages that run it stale, and an edit to the report re-trains
nothing. The list of a stage is the import closure of its command:
- every `import rgsyn...` / `from rgsyn... import ...` in a file counts, at module level or inside a
  function (a lazy import runs when the stage calls that function); `from P import x` counts the
  module P.x when there is one; importing a module runs its packages' `__init__.py` files, which count;
- imports under `if TYPE_CHECKING:` never run and do not count;
- rgsyn/cli.py is the dispatcher, followed function by function rather than whole: from `main`,
  through the cli functions it calls (only calls: the parser's references to other commands'
  handlers do not run), plus the handler `cmd_<command>` where the command has one (`data`), plus
  the stage's "module:function" target (`cli.STAGES`), which the cli imports by name; a
  "rgsyn.x:f" string in a reached cli function is such a target too;
- a stage started by `${launcher}` (`accelerate launch ... -m rgsyn ...`) also runs rgsyn/__main__.py.

The lists are generated, not kept by hand; tests/test_dvc_deps.py fails when dvc.yaml disagrees.
Entries of `deps` outside rgsyn/ (data, models, digests) are left as they are, after the code.

    python scripts/dvc_deps.py --check   # exit 1 naming each stage and the missing or surplus file
    python scripts/dvc_deps.py --write   # rewrite the rgsyn/ entries of every stage's deps
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import re
import shlex
import sys
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "rgsyn"
DISPATCHER = "rgsyn.cli"      # followed function by function from ENTRY
ENTRY = "main"
LAUNCHED_MAIN = "rgsyn.__main__"


# ------------------------------------------------------------------------------- modules and files
def module_file(name: str, root: Path = REPO) -> Path | None:
    """The file of module `name` under `root` (a package's __init__.py), or None."""
    base = root.joinpath(*name.split("."))
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
           (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(nodes):
    """ast.walk over `nodes`, skipping the bodies of `if TYPE_CHECKING:`."""
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def imported_modules(nodes, module: str, root: Path = REPO) -> set[str]:
    """The rgsyn modules that the statements `nodes` of `module` import, anywhere inside them."""
    is_pkg = module_file(module, root) is not None and module_file(module, root).name == "__init__.py"
    found: set[str] = set()
    for node in _walk(nodes):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_pkg else 0)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if module_file(f"{base}.{a.name}", root))
    return {m for m in found if (m == PACKAGE or m.startswith(PACKAGE + ".")) and module_file(m, root)}


@lru_cache(maxsize=None)
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def file_imports(module: str, root: Path = REPO) -> set[str]:
    return imported_modules(_tree(module_file(module, root)).body, module, root)


# ------------------------------------------------------------------------------- the dispatcher
def _top_functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _targets(nodes) -> set[str]:
    """Modules named by "rgsyn.x.y:function" strings (the cli imports them by name with importlib)."""
    target = re.compile(rf"({PACKAGE}(?:\.\w+)+):\w+")
    return {m.group(1) for node in _walk(nodes) if isinstance(node, ast.Constant) and isinstance(node.value, str)
            for m in [target.fullmatch(node.value)] if m}


def dispatcher_imports(start: list[str], root: Path = REPO, dispatcher: str = DISPATCHER) -> set[str]:
    """What the dispatcher imports when it runs the functions `start`: its module-level imports, and
    the imports and "module:function" targets of the functions reached from `start` by calls."""
    tree = _tree(module_file(dispatcher, root))
    funcs = _top_functions(tree)
    module_level = [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    reached, todo = set(), [f for f in start if f in funcs]
    missing = [f for f in start if f not in funcs]
    if missing:
        raise SystemExit(f"{module_file(dispatcher, root)}: no function {', '.join(missing)}")
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        for node in ast.walk(funcs[name]):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in funcs:
                todo.append(node.func.id)
    bodies = [funcs[f] for f in sorted(reached)]
    return (imported_modules(module_level, dispatcher, root) | imported_modules(bodies, dispatcher, root)
            | {m for m in _targets(bodies) if module_file(m, root)})


def closure(entry_modules: set[str], dispatcher_start: list[str], root: Path = REPO,
            dispatcher: str = DISPATCHER) -> set[str]:
    """Every rgsyn module that runs: the entries, the dispatcher's reached part, what they import,
    transitively, and the packages above each."""
    seen: set[str] = set()
    todo = [dispatcher, *entry_modules, *dispatcher_imports(dispatcher_start, root, dispatcher)]
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        todo.extend(p for p in _parents(mod) if module_file(p, root))
        if mod != dispatcher:   # the dispatcher's imports are the reached ones above, not all of it
            todo.extend(file_imports(mod, root))
    return seen


def command_modules(cmd: str, root: Path = REPO) -> set[str]:
    """The rgsyn modules that the dvc.yaml command line `cmd` (`[${launcher}] rgsyn X ...`) runs."""
    argv = shlex.split(cmd)
    if PACKAGE not in argv or argv.index(PACKAGE) + 1 >= len(argv):
        raise ValueError(f"not an `rgsyn <command>` line: {cmd!r}")
    command = argv[argv.index(PACKAGE) + 1]
    stages = _cli_stages(root)
    funcs = _top_functions(_tree(module_file(DISPATCHER, root)))
    entries: set[str] = set()
    start = [ENTRY]
    if command in stages:
        entries.add(stages[command].partition(":")[0])
    elif f"cmd_{command}" in funcs:
        start.append(f"cmd_{command}")
    else:
        raise ValueError(f"{cmd!r}: `rgsyn {command}` is neither in cli.STAGES nor a cmd_{command} handler")
    if argv[0] == "${launcher}":
        entries.add(LAUNCHED_MAIN)
    return closure(entries, start, root)


def _cli_stages(root: Path) -> dict[str, str]:
    """command -> "module:function" from the STAGES registry of root's cli.py, loaded from that file
    whatever rgsyn is imported already (the registry only names strings)."""
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    spec = importlib.util.spec_from_file_location(f"_dvc_deps_cli_{abs(hash(root))}", module_file(DISPATCHER, root))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    return {name: entry[0] for name, entry in cli.STAGES.items()}


def module_paths(modules: set[str], root: Path = REPO) -> list[str]:
    return sorted(str(module_file(m, root).relative_to(root)) for m in modules)


# ------------------------------------------------------------------------------- dvc.yaml
WIDTH = 110


def load(text: str):
    from ruamel.yaml import YAML

    return YAML().load(text)      # round trip: keeps each key's line, for rewrite()


def stage_bodies(doc) -> dict:
    """stage name -> the mapping that holds its cmd and deps (`do` of a foreach stage)."""
    return {name: (body["do"] if "do" in body else body) for name, body in doc["stages"].items()}


def is_code(dep: str) -> bool:
    return dep.startswith(PACKAGE + "/")


def expected_code_deps(cmd: str, root: Path = REPO) -> list[str]:
    return module_paths(command_modules(cmd, root), root)


def differences(doc, root: Path = REPO) -> dict[str, tuple[list[str], list[str]]]:
    """stage -> (missing, surplus) code deps; only the stages that differ."""
    out = {}
    for name, body in stage_bodies(doc).items():
        want = set(expected_code_deps(body["cmd"], root))
        have = {d for d in body.get("deps", []) if is_code(d)}
        if want != have:
            out[name] = (sorted(want - have), sorted(have - want))
    return out


def _scalar(dep: str) -> str:
    plain = dep and all(c.isalnum() or c in "_./-" for c in dep)
    return dep if plain else '"' + dep.replace("\\", "\\\\").replace('"', '\\"') + '"'


def flow_list(items: list[str], col: int) -> str:
    """`[a, b, ...]` for a value that starts at column `col`: wrapped at WIDTH, continuation lines
    aligned under the first item, the code deps first and the other deps from a new line."""
    groups = [[_scalar(i) for i in items if is_code(i)], [_scalar(i) for i in items if not is_code(i)]]
    rows: list[list[str]] = []
    for group in (g for g in groups if g):
        rows.append([])
        for word in group:
            if rows[-1] and col + 1 + len(", ".join(rows[-1] + [word])) + 2 > WIDTH:
                rows.append([])
            rows[-1].append(word)
    return "[" + (",\n" + " " * (col + 1)).join(", ".join(r) for r in rows) + "]"


def _value_end(text_lines: list[str], key_line: int, key_col: int) -> int:
    """The line after the value of the key at (key_line, key_col): its value runs on while lines are
    indented deeper (or are `- ` items at the key's column); trailing comments stay outside."""
    end = key_line + 1
    last = key_line + 1
    while end < len(text_lines):
        ln = text_lines[end]
        body = ln.strip()
        indent = len(ln) - len(ln.lstrip())
        if body and not body.startswith("#"):
            if indent > key_col or (indent == key_col and body.startswith("- ")):
                last = end + 1
            else:
                break
        end += 1
    return last


def rewrite(text: str, root: Path = REPO) -> tuple[str, list[str]]:
    """dvc.yaml text with every stage's rgsyn/ deps replaced by its closure (code first, then the
    other deps in their order); only the deps values change. Returns (text, changed stage names)."""
    doc = load(text)
    lines = text.split("\n")
    edits, changed = [], []
    for name, body in stage_bodies(doc).items():
        old = list(body.get("deps", []))
        new = expected_code_deps(body["cmd"], root) + [d for d in old if not is_code(d)]
        if new == old:
            continue
        if "deps" not in body:
            raise SystemExit(f"stage {name}: has no deps to write the code into; add `deps: []`")
        line, col = body.lc.key("deps")
        head = " " * col + "deps: "
        block = (head + flow_list(new, len(head))).split("\n")
        edits.append((line, _value_end(lines, line, col), block))
        changed.append(name)
    for start, end, block in sorted(edits, reverse=True):
        lines[start:end] = block
    return "\n".join(lines), changed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 when dvc.yaml's code deps differ")
    mode.add_argument("--write", action="store_true", help="rewrite the code deps in dvc.yaml")
    ap.add_argument("--dvc-yaml", type=Path, default=REPO / "dvc.yaml")
    args = ap.parse_args(argv)
    text = args.dvc_yaml.read_text()
    if args.write:
        text, changed = rewrite(text)
        args.dvc_yaml.write_text(text)
        print(f"{args.dvc_yaml}: code deps rewritten in {len(changed)} stage(s): {', '.join(changed) or '-'}")
        return 0
    diff = differences(load(text))
    for name, (missing, surplus) in diff.items():
        print(f"stage {name}: missing {missing or '-'}; surplus {surplus or '-'}")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())

"""Code size of a package: code lines per module, the longest functions, internal imports.

Code lines leave out docstrings, comments and blank lines. Used for the numbers in
notes/issue-11-architecture.md:

    python scripts/code_size.py kerasmorph [--top 20]
"""

import argparse
import ast
import io
import pathlib
import tokenize


def code_lines(source: str) -> tuple[set[int], ast.AST]:
    """The line numbers holding code (not docstrings, comments or blank lines), and the tree."""
    tree = ast.parse(source)
    doc_lines = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                doc_lines.update(range(body[0].lineno, body[0].end_lineno + 1))
    skipped = (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
    lines = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in skipped or token.type == tokenize.ENDMARKER:
            continue
        lines.update(n for n in range(token.start[0], token.end[0] + 1) if n not in doc_lines)
    return lines, tree


def measure(root: pathlib.Path):
    modules, functions = [], []
    internal = inside = 0
    for path in sorted(root.rglob("*.py")):
        lines, tree = code_lines(path.read_text())
        modules.append((len(lines), str(path)))
        nested = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                count = len([n for n in lines if node.lineno <= n <= node.end_lineno])
                functions.append((count, f"{path}:{node.lineno} {node.name}"))
                nested.update(
                    id(sub)
                    for sub in ast.walk(node)
                    if isinstance(sub, (ast.Import, ast.ImportFrom))
                )
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] == root.name:
                    internal += 1
                    inside += id(node) in nested
    return modules, functions, internal, inside


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=pathlib.Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    modules, functions, internal, inside = measure(args.root)
    print(f"{len(modules)} modules, {sum(n for n, _ in modules)} code lines")
    for count, path in sorted(modules, reverse=True)[: args.top]:
        print(f"{count:6d} {path}")
    print("longest functions:")
    for count, name in sorted(functions, reverse=True)[: args.top]:
        print(f"{count:6d} {name}")
    share = 100 * inside / max(internal, 1)
    print(f"internal imports: {internal}, inside functions: {inside} ({share:.0f}%)")


if __name__ == "__main__":
    main()

"""The layout's measurable rules, read from the source (no import, no backend):

- no Python function in ``service/`` over 60 lines;
- no Lua function over 60 lines (``storage/lua/*.lua``);
- no SQL statement in a ``.py`` file of ``service/`` outside the query loader (``storage/queries.py``):
  every statement is a named query in ``storage/sql/queries/*.sql``;
- no use of another module's private members (``x._name`` where ``_name`` is not the module's own,
  ``from m import _name``).

Each test lists every offender (file:line), so a failure says what to move or split.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICE = ROOT / "service" / "quota_service"
SERVICE_DIR = ROOT / "service"
LUA = SERVICE / "storage" / "lua"
LOADER = SERVICE / "storage" / "queries.py"
MAX_LINES = 60

# the start of a SQL statement in a string literal (the project writes SQL keywords in capitals)
SQL_START = re.compile(
    r"""^\s*(?:
        SELECT\s
      | INSERT\s+INTO\b
      | UPDATE\s+\w+(?:\s+(?:AS\s+)?\w+)?\s+SET\b
      | DELETE\s+FROM\b
      | WITH\s+(?:RECURSIVE\s+)?\w+\s+AS\s*(?:MATERIALIZED\s*)?\(
      | (?:CREATE|ALTER|DROP)\s+(?:OR\s+REPLACE\s+|UNIQUE\s+|TEMP(?:ORARY)?\s+)?
            (?:TABLE|INDEX|FUNCTION|TRIGGER|VIEW|SEQUENCE|SCHEMA|DATABASE|EXTENSION|TYPE|ROLE)\b
      | TRUNCATE\b | LOCK\s+TABLE\b | COPY\s+\w+ | VACUUM\b | ANALYZE\b
      | (?:BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE\s+SAVEPOINT)\s*;?\s*$
      | (?:LISTEN|UNLISTEN|NOTIFY)\s+\w+
      | SET\s+(?:LOCAL\s+|SESSION\s+)?\w+\s*(?:=|TO\b)
    )""",
    re.X,
)
LUA_FUNCTION = re.compile(r"^(?:local\s+)?function\s+([\w.:]+)\s*\(")
LUA_END = re.compile(r"^end\b")
# namedtuple's public API is spelt with a leading underscore
PUBLIC_UNDERSCORED = frozenset({"_replace", "_asdict", "_fields", "_make", "_field_defaults"})


def python_files() -> list[Path]:
    return sorted(SERVICE_DIR.rglob("*.py"))


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


@cache
def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


# -- functions ------------------------------------------------------------------------------------


def long_python_functions(path: Path) -> Iterator[str]:
    for node in sorted(ast.walk(tree(path)), key=lambda n: getattr(n, "lineno", 0)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            n = node.end_lineno - node.lineno + 1
            if n > MAX_LINES:
                yield f"{rel(path)}:{node.lineno} {node.name}() is {n} lines"


def lua_functions(text: str) -> Iterator[tuple[str, int, int]]:
    """(name, first line, line count) of every function that starts at the beginning of a line; it
    ends at the first line that starts with `end` (one-line functions end on their own line)."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = LUA_FUNCTION.match(lines[i])
        if m is None:
            i += 1
            continue
        start = i
        if not re.search(r"\bend\s*(?:--.*)?$", lines[i]):
            i += 1
            while i < len(lines) and not LUA_END.match(lines[i]):
                i += 1
            if i == len(lines):
                raise AssertionError(f"function {m.group(1)} (line {start + 1}) has no `end` at the start of a line")
        yield m.group(1), start + 1, i - start + 1
        i += 1


def test_no_python_function_in_service_is_over_60_lines() -> None:
    found = [msg for path in python_files() for msg in long_python_functions(path)]
    assert not found, f"{len(found)} function(s) over {MAX_LINES} lines:\n" + "\n".join(found)


def test_no_lua_function_is_over_60_lines() -> None:
    scripts = sorted(LUA.glob("*.lua"))
    assert scripts, f"no Lua scripts in {rel(LUA)}"
    found = [f"{rel(path)}:{line} {name}() is {n} lines"
             for path in scripts for name, line, n in lua_functions(path.read_text()) if n > MAX_LINES]
    assert not found, f"{len(found)} Lua function(s) over {MAX_LINES} lines:\n" + "\n".join(found)


def test_the_lua_parser_finds_functions_and_their_ends() -> None:
    text = ("local function one(v) return v end\n"
            "local function two(a)\n  local function inner()\n  end\n  return a\nend\n"
            "function M.three()\nend\n")
    assert list(lua_functions(text)) == [("one", 1, 1), ("two", 2, 5), ("M.three", 7, 2)]


# -- SQL ------------------------------------------------------------------------------------------


def docstrings(module: ast.Module) -> set[int]:
    """ids of the string constants that are docstrings (prose, not statements)."""
    out = set()
    for node in ast.walk(module):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def text_of(node: ast.AST) -> str | None:
    """The text of a string literal, an f-string or a sum with a string in it (``{}`` for each part
    that is not a literal); None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = text_of(node.left), text_of(node.right)
        if left is not None or right is not None:
            return (left if left is not None else "{}") + (right if right is not None else "{}")
    return None


def string_literals(module: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, text) of every string a module spells (the outermost sum or f-string as one text),
    docstrings left out."""
    skip = docstrings(module)
    for node in ast.walk(module):  # outer nodes first: a sum's parts are skipped once it is read
        if id(node) in skip:
            continue
        text = text_of(node)
        if text is not None:
            skip.update(id(part) for part in ast.walk(node))
            yield getattr(node, "lineno", 0), text


def sql_literals(module: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, first line) of every string literal that starts a SQL statement, in line order."""
    for line, text in sorted(string_literals(module)):
        if SQL_START.match(text):
            yield line, text.strip().splitlines()[0][:90]


def test_no_sql_statement_in_python_outside_the_query_loader() -> None:
    found = [f"{rel(path)}:{line} {first!r}" for path in python_files() if path != LOADER
             for line, first in sql_literals(tree(path))]
    assert not found, (f"{len(found)} SQL statement(s) in .py files; make them named queries in "
                       "storage/sql/queries/*.sql (Q[name]):\n" + "\n".join(found))


def test_the_sql_pattern_tells_statements_from_prose() -> None:
    statements = ["SELECT 1", "  INSERT INTO t (a) VALUES ($1)", "UPDATE accounts SET epoch = 1",
                  "DELETE FROM holds", "WITH doomed AS (SELECT 1) DELETE FROM x", "CREATE TABLE IF NOT EXISTS x",
                  "ROLLBACK", "CREATE OR REPLACE FUNCTION f()", "LISTEN quota_alerts"]
    prose = ["Select an account", "update the grant", "DELETE", "WITH", "the SELECT below", "ALTER ego",
             "SET", "COMMIT or roll back"]
    assert [s for s in statements if not SQL_START.match(s)] == []
    assert [s for s in prose if SQL_START.match(s)] == []
    source = ('"""SELECT the docstring is prose."""\n'
              'a = f"SELECT {cols} FROM t"\n'
              'b = "UPDATE " + "t SET x = 1"\n'
              'c = "DROP TABLE ledger"\n'
              'd = f"selected {a}"\n')
    assert list(sql_literals(ast.parse(source))) == [(2, "SELECT {} FROM t"), (3, "UPDATE t SET x = 1"),
                                                     (4, "DROP TABLE ledger")]


# -- private members ------------------------------------------------------------------------------


def own_names(module: ast.Module) -> set[str]:
    """The private names a module defines itself: its functions, classes, variables, attributes it
    assigns (``self._x = ...``) and class-level names. Using them anywhere in the module is its own
    business."""
    out: set[str] = set()
    for node in ast.walk(module):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            out.add(node.attr)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
        elif isinstance(node, ast.alias) and node.asname:
            out.add(node.asname)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out.add(node.target.id)
    return {n for n in out if is_private(n)}


def private_uses(module: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, what) for every use of a private name the module does not define itself."""
    own = own_names(module)
    for node in sorted(ast.walk(module), key=lambda n: getattr(n, "lineno", 0)):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if is_private(alias.name):
                    yield node.lineno, f"imports {alias.name} from {node.module}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if any(is_private(part) for part in alias.name.split(".")):
                    yield node.lineno, f"imports {alias.name}"
        elif isinstance(node, ast.Attribute) and is_private(node.attr) and node.attr not in PUBLIC_UNDERSCORED:
            receiver = node.value
            if isinstance(receiver, ast.Name) and receiver.id in ("self", "cls"):
                continue
            if node.attr not in own:
                yield node.lineno, f"uses {ast.unparse(node)}"


def test_no_module_uses_another_modules_private_members() -> None:
    found = [f"{rel(path)}:{line} {what}" for path in python_files() for line, what in private_uses(tree(path))]
    assert not found, f"{len(found)} use(s) of private members across modules:\n" + "\n".join(found)


def test_the_private_member_check_sees_foreign_uses_only() -> None:
    source = ("from m import _hidden\n"
              "import asyncio\n"
              "class A:\n"
              "    def __init__(self) -> None:\n"
              "        self._mine = 1\n"
              "    def same(self, other: 'A') -> int:\n"
              "        return other._mine + self._mine\n"
              "def f(ledger: object) -> object:\n"
              "    asyncio._get_running_loop()\n"
              "    return ledger._call, (1, 2)._asdict, A.__init__\n")
    assert list(private_uses(ast.parse(source))) == [
        (1, "imports _hidden from m"), (9, "uses asyncio._get_running_loop"), (10, "uses ledger._call")]

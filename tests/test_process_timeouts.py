"""Every process a test starts, and every wait on one, has a time limit: a hang fails its test instead of
holding the suite, and CI, until CI's own limit (DDP predict once hung for 25 minutes)."""

import ast
from pathlib import Path

TESTS = Path(__file__).parent
RUNS = {"run", "call", "check_call", "check_output"}  # subprocess's functions that wait for the end
WAITS = {"communicate", "wait"}  # a Popen's


def waits_without_limit(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name, owner = node.func.attr, ast.unparse(node.func.value)
        waits = (owner == "subprocess" and name in RUNS) or (name in WAITS and owner != "subprocess")
        if waits and not any(keyword.arg == "timeout" for keyword in node.keywords):
            found.append(f"line {node.lineno}: {ast.unparse(node)[:80]}")
    return found


def test_every_process_a_test_starts_has_a_time_limit():
    found = {
        str(path.relative_to(TESTS)): where
        for path in sorted(TESTS.rglob("*.py"))
        if (where := waits_without_limit(path.read_text()))
    }
    assert not found, f"pass timeout= to these: {found}"


def test_a_wait_without_a_limit_is_found():
    assert waits_without_limit("import subprocess\nsubprocess.run(['true'])\n")
    assert waits_without_limit("process.communicate()\n")
    assert not waits_without_limit("subprocess.run(['true'], timeout=5)\nprocess.wait(timeout=5)\n")

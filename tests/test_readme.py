"""The README's Python example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)  # noqa: S102
    assert namespace["out"].shape == (4096, 64)
    assert namespace["down"].shape == (1024, 64)


def _subparsers():
    import argparse

    from itnet_geo import cli

    parser = cli.build_parser()
    action = next(
        a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
    )
    return action.choices


def _commands(text):
    """``(command, rest of the line)`` of every ``itnet-geo COMMAND ...`` in text."""
    text = text.replace("\\\n", " ")  # shell line continuations
    return re.findall(r"itnet-geo ([a-z]+)((?: +[^`|#\n]*)?)", text)


def _unknown_options(commands):
    subparsers = _subparsers()
    out = []
    for sub, rest in commands:
        if sub not in subparsers:
            out.append(f"itnet-geo {sub}")
            continue
        known = set(subparsers[sub]._option_string_actions)
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", rest):
            if flag not in known:
                out.append(f"itnet-geo {sub} {flag}")
    return out


def test_documented_commands_use_options_that_exist():
    # every `itnet-geo COMMAND ... --flag` in the READMEs (tables, text, code), so
    # that a renamed or removed option cannot leave the documentation stale
    root = README.parent
    pages = [README, *sorted(root.glob("checkpoints/**/README.md"))]
    commands = [c for page in pages for c in _commands(page.read_text())]
    assert len(commands) > 20
    assert _unknown_options(commands) == []
    planted = _commands("`itnet-geo train --out x --no-such-flag 2` and `itnet-geo x`")
    expected = ["itnet-geo train --no-such-flag", "itnet-geo x"]
    assert _unknown_options(planted) == expected

"""The README's quick start as commands (so a test can run them): the lines of the sh block
after `<!-- quickstart -->`, without comments."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- quickstart -->"


def quickstart_commands(readme: Path = README) -> list[str]:
    """Each command of the quick start block, in order, trailing `# comments` removed."""
    text = readme.read_text()
    if MARKER not in text:
        raise AssertionError(f"{readme} has no {MARKER} block")
    block = re.search(r"```sh\n(.*?)```", text[text.index(MARKER):], re.S)
    assert block, f"no ```sh block after {MARKER} in {readme}"
    commands = []
    for line in block.group(1).splitlines():
        command = re.sub(r"\s+#.*$", "", line).strip()
        if command and not command.startswith("#"):
            commands.append(command)
    return commands


if __name__ == "__main__":
    print("\n".join(quickstart_commands()))

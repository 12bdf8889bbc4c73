"""What the SSH front door reads from the command line it is given: `host <uuid> [CMD]`,
`host -s <uuid> CMD`, `enter <uuid> <service or container id> [CMD]`. A command of several
words reaches the device's shell as sent (balena CLI's `device ssh <uuid> <service>` sends
quoting and `$(...)` for it); one quoted word is the command."""

from __future__ import annotations

import pytest

from edgefleet.server.tunnel.sshd import UsageError, parse_command

PS = ('"$(if [ -f /usr/bin/balena ]; then echo "balena"; else echo "docker"; fi)" ps '
      '--format "{{.ID}} {{.Names}}"')


@pytest.mark.parametrize(("line", "parsed"), [
    ("host abc", ("abc", None, None)),
    ("host -s abc 'echo a; exit 3'", ("abc", None, "echo a; exit 3")),
    ("host -s abc cat /etc/hostname", ("abc", None, "cat /etc/hostname")),
    (f"host abc {PS}", ("abc", None, PS)),
    ("enter abc main", ("abc", "main", None)),
    ("enter abc 0123456789ab", ("abc", "0123456789ab", None)),
    ("enter abc web  ls  -l '/a b'", ("abc", "web", "ls  -l '/a b'")),
])
def test_commands(line: str, parsed: tuple[str, str | None, str | None]) -> None:
    assert parse_command(line) == parsed


@pytest.mark.parametrize("line", ["", "host", "host -s", "enter abc", "rm -rf /", None])
def test_usage(line: str | None) -> None:
    with pytest.raises(UsageError, match="usage: host <uuid>"):
        parse_command(line)

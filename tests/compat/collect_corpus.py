"""Copy the public compat corpus into tests/compat/corpus and write sources.json.

Run by hand (`python tests/compat/collect_corpus.py`) with the repositories mirrored under
/work/.mirror (the search tool's `fetch`); the test reads only what this wrote. Each input is
recorded with its repository, commit and path, and what balena does with it where balena's own
tests say so ("accept" / "refuse"); otherwise "rules" (balena's parser rules decide).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

MIRROR = Path("/work/.mirror")
HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
MAX_BYTES = 6000

PARSER = "balena-io-modules/balena-compose-parser"
# What balena-compose-parser's test/compose.spec.ts refuses: the fields of its deny lists
# (each has unsupported/<field>.yml) and the fixtures of its other "should reject" tests.
SERVICE_DENY = {"blkio_config", "configs", "cpu_count", "cpu_percent", "cpu_period",
                "credential_spec", "deploy", "develop", "external_links", "gpus", "isolation",
                "links", "logging", "mem_swappiness", "memswap_limit", "oom_kill_disable",
                "platform", "pull_policy", "runtime", "scale", "secrets", "stdin_open",
                "storage_opt"}
BUILD_DENY = {"additional_contexts", "cache_to", "dockerfile_inline", "entitlements",
              "isolation", "network", "no_cache", "platforms", "privileged", "pull", "secrets",
              "ssh", "tags", "ulimits"}
PARSER_REFUSES = {
    "compose/secrets.yml", "compose/configs.yml", "build/context_remote.yml",
    "services/extends_nonexistent.yml", "services/ipc.yml", "build/unsupported/invalid_net.yml",
    "build/unsupported/volume_options.yml", "build/unsupported/tmpfs_options.yml",
    "networks/unsupported/attachable.yml", "networks/unsupported/external.yml",
    "networks/unsupported/driver_custom.yml", "networks/unsupported/aux_addresses.yml",
    "networks/unsupported/enable_ipv4.yml", "networks/unsupported/enable_ipv4_false.yml",
    "volumes/unsupported/external.yml", "volumes/unsupported/driver_custom.yml",
    *(f"services/unsupported/{n}.yml" for n in (
        "devices_cdi_syntax", "network_mode_container", "network.link_local_ips",
        "pids_limit_negative", "pid_container", "ports_invalid", "security_opt_unsupported",
        "profiles_invalid", "volume_bind", "volume_bind_relative", "volume_image",
        "volume_npipe", "volume_cluster", "volume_invalid", "volume_missing",
        "volumes_from_container")),
    *(f"services/unsupported/{n}.yml" for n in SERVICE_DENY),
    *(f"build/unsupported/{n}.yml" for n in BUILD_DENY),
}
# parsed by the spec together with another file (not inputs on their own)
PARSER_PARTS = re.compile(r"merge/.*-override\.yml$")
# the environment the spec sets for a fixture
PARSER_VARIABLES = {"compose/interpolation/compose.yml": {
    "IMAGE_TAG": "3.18", "APP_PORT": "8080", "APP_ENV": "production", "DB_NAME": "myapp_db"}}
SOURCES: dict[str, str] = {
    PARSER: r"^test/fixtures/",
    "balena-io-modules/balena-compose":
        r"^test/(multibuild/test-files|parse/fixtures)/.*(\.ya?ml|\.env|\.envfile)$",
    "docker/compose": r"^pkg/e2e/fixtures/(?!bridge/).*(\.ya?ml|\.env|/\.env[^/]*)$",
    "balena-io/balena-supervisor":
        r"^test/data/(apps(-pin)?\.json|docker-states/.*/compose\.json)$",
    "balena-io-experimental/balena-sound": r"^docker-compose\.yml$",
    "balenablocks/audio": r"(^|/)docker-compose[^/]*\.ya?ml$",
}
for name in ("multicontainer-getting-started", "device-tags", "cloud-relay", "system-metrics",
             "staged-releases", "aws-iot-provision", "baletheus", "balena-plant-saver",
             "nvidia-x86", "tx2-container-contracts-sample", "balena-updates-lock",
             "balena-netdata", "network-metrics-logger", "x11-window-manager",
             "hostapd-minimal"):
    SOURCES[f"balena-io-examples/{name}"] = r"(^|/)docker-compose[^/]*\.ya?ml$"


def git(repo_dir: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(repo_dir), *args], capture_output=True,
                          text=True, check=True).stdout


def git_dir(repo: str) -> Path:
    base = MIRROR / repo.replace("/", "+") / "repo"
    return base / ".git" if (base / ".git").is_dir() else base


def kind_of(repo: str, path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    if PARSER_PARTS.search(path) or not re.search(r"\.(ya?ml|json)$", path) \
            or ("/contracts/" in path and "multibuild" in path) \
            or (repo == "docker/compose" and "compose" not in name):
        return "support"
    if path.endswith("apps.json") or path.endswith("apps-pin.json"):
        return "apps.json"
    if path.endswith("compose.json"):
        return "service-composition"
    if "/.env" in path or path.startswith(".env") or path.endswith(".env"):
        return "support"
    return "compose"


def expectation(repo: str, path: str) -> str:
    if repo != PARSER:
        return "rules"
    if any(path.endswith(f) for f in PARSER_REFUSES) or "/contracts/invalid_" in path:
        return "refuse"
    return "accept"


def main() -> int:
    entries = []
    for repo, pattern in SOURCES.items():
        gd = git_dir(repo)
        if not gd.exists():
            print(f"missing mirror: {repo}", file=sys.stderr)
            continue
        commit = git(gd, "rev-parse", "HEAD").strip()
        for line in git(gd, "ls-tree", "-r", "-l", "HEAD").splitlines():
            meta, path = line.split("\t", 1)
            size = meta.split()[3]
            if not re.search(pattern, path) or not size.isdigit() or int(size) > MAX_BYTES:
                continue
            dest = CORPUS / repo.replace("/", "__") / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(subprocess.run(["git", "--git-dir", str(gd), "show",
                                             f"HEAD:{path}"], capture_output=True,
                                            check=True).stdout)
            entry: dict[str, object] = {
                "file": str(dest.relative_to(CORPUS)), "repo": repo, "commit": commit,
                "path": path, "kind": kind_of(repo, path), "balena": expectation(repo, path)}
            for suffix, variables in PARSER_VARIABLES.items():
                if repo == PARSER and path.endswith(suffix):
                    entry["variables"] = variables
            entries.append(entry)
    (HERE / "sources.json").write_text(json.dumps(entries, indent=1) + "\n")
    inputs = [e for e in entries if e["kind"] != "support"]
    print(f"{len(inputs)} inputs ({len(entries)} files) from {len(SOURCES)} repositories")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

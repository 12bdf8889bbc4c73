"""An uploaded project (a tar of the directory `edgefleet push` sends): unpacked safely, its
compose file or single Dockerfile found, and one build context per service made."""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefleet.model.compose_file import load_compose
from edgefleet.model.errors import InvalidInput, Problem
from edgefleet.server import dockerignore
from edgefleet.server.releases import SINGLE_SERVICE

COMPOSE_FILES = ("docker-compose.yml", "docker-compose.yaml", "compose.yml", "compose.yaml")
MAX_UPLOAD = 512 * 2**20


@dataclass(frozen=True)
class BuildSpec:
    """What to build for one service."""

    service: str
    context: Path
    dockerfile: str
    args: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Project:
    """An unpacked project: its compose document and the services to build."""

    composition: dict[str, Any]
    """The compose document (`{}` for a single-Dockerfile project)."""
    builds: list[BuildSpec]
    images: dict[str, str]
    """Services that name an image and are not built: service → image ref."""


def unpack(*, data: bytes, into: Path) -> None:
    """Extract an uploaded tar (gzip allowed); refuse absolute paths, `..`, links, devices."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            tar.extractall(into, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InvalidInput("upload", [Problem("", f"not a usable tar archive: {exc}")]
                           ) from None


def _service_build(name: str, conf: dict[str, Any], root: Path) -> BuildSpec | Problem:
    build = conf["build"]
    if isinstance(build, str):
        build = {"context": build}
    if not isinstance(build, dict):
        return Problem(f"services.{name}.build", "expected a path or a mapping")
    context = (root / str(build.get("context", "."))).resolve()
    if not context.is_dir() or not context.is_relative_to(root.resolve()):
        return Problem(f"services.{name}.build.context",
                       f"{build.get('context')!r} is not a directory of the project")
    dockerfile = str(build.get("dockerfile") or "")
    if not dockerfile:
        dockerfile = ("Dockerfile.template" if (context / "Dockerfile.template").is_file()
                      else "Dockerfile")
    if not (context / dockerfile).is_file():
        return Problem(f"services.{name}.build", f"no {dockerfile} in {build.get('context')!r}")
    args = build.get("args") or {}
    if isinstance(args, list):
        args = dict(str(a).split("=", 1) for a in args if "=" in str(a))
    return BuildSpec(service=name, context=context, dockerfile=dockerfile,
                     args={str(k): str(v) for k, v in args.items()})


def load_project(*, root: Path) -> Project:
    """Find what to build: a compose file at the root, else a Dockerfile(.template)."""
    for name in COMPOSE_FILES:
        path = root / name
        if path.is_file():
            break
    else:
        for df in ("Dockerfile.template", "Dockerfile"):
            if (root / df).is_file():
                return Project(composition={}, images={},
                               builds=[BuildSpec(SINGLE_SERVICE, root, df)])
        raise InvalidInput("project", [Problem("", "no docker-compose.yml, Dockerfile or "
                                                   "Dockerfile.template at the top")])
    try:  # YAML 1.2; include, extends, env_file and label_file expanded inside the project
        doc = load_compose(path.read_text(errors="replace"), base=root)
    except InvalidInput as exc:
        raise InvalidInput(name, exc.problems) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict) \
            or not doc["services"]:
        raise InvalidInput(name, [Problem("services", "a compose file needs services")])
    problems: list[Problem] = []
    builds: list[BuildSpec] = []
    images: dict[str, str] = {}
    for svc, conf in doc["services"].items():
        conf = conf or {}
        if "build" in conf:
            spec = _service_build(str(svc), conf, root)
            if isinstance(spec, Problem):
                problems.append(spec)
            else:
                builds.append(spec)
        elif conf.get("image"):
            images[str(svc)] = str(conf["image"])
        else:
            problems.append(Problem(f"services.{svc}", "needs build or image"))
    if problems:
        raise InvalidInput(name, problems)
    return Project(composition=doc, builds=builds, images=images)


def context_tar(*, spec: BuildSpec, substitutions: dict[str, str]) -> tuple[bytes, str]:
    """The build context of one service as a tar (honouring its .dockerignore), and the
    Dockerfile name to build with (a template becomes `Dockerfile.edgefleet`)."""
    ignore_file = spec.context / ".dockerignore"
    patterns = dockerignore.parse(ignore_file.read_text()) if ignore_file.is_file() else []
    buf = io.BytesIO()
    dockerfile = spec.dockerfile
    with tarfile.open(fileobj=buf, mode="w") as tar:
        always = frozenset({spec.dockerfile, ".dockerignore"})
        for rel in dockerignore.included_files(str(spec.context), patterns=patterns,
                                                   always=always):
            tar.add(spec.context / rel, arcname=rel, recursive=False)
        if dockerfile.endswith(".template"):
            text = (spec.context / dockerfile).read_text()
            for key, value in substitutions.items():
                text = text.replace(f"%%{key}%%", value)
            data = text.encode()
            info = tarfile.TarInfo("Dockerfile.edgefleet")
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
            dockerfile = "Dockerfile.edgefleet"
    return buf.getvalue(), dockerfile


def template_values(*, device_type: str, arch: str) -> dict[str, str]:
    """`%%BALENA_MACHINE_NAME%%`, `%%BALENA_ARCH%%` and their `RESIN_` twins."""
    return {"BALENA_MACHINE_NAME": device_type, "BALENA_ARCH": arch,
            "RESIN_MACHINE_NAME": device_type, "RESIN_ARCH": arch}


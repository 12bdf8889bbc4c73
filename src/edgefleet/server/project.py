"""An uploaded project (a tar of the directory `edgefleet push` sends), once `unpack` has made
it: its compose file or single Dockerfile found, every build path checked to stay inside it,
and one build context per service made."""

from __future__ import annotations

import io
import posixpath
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from edgefleet.engine.build import context_files, ignore_rules
from edgefleet.model.compose_file import load_compose
from edgefleet.model.errors import InvalidInput, Problem
from edgefleet.server.releases import SINGLE_SERVICE

COMPOSE_FILES = ("docker-compose.yml", "docker-compose.yaml", "compose.yml", "compose.yaml")


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
    scratch: Path | None = None
    """A directory beside the project for build contexts on their way to the engine."""


def inside(root: Path, base: str, text: str) -> Path | None:
    """`text` (relative to `base`, itself relative to `root`) as a path in the project, or
    None when it leaves it. Decided on the text alone, so the answer never depends on what
    exists outside; the unpacker made sure that links in the project point inside it."""
    if not text or "\0" in text or text.startswith("/"):
        return None
    joined = posixpath.normpath(posixpath.join(base, text))
    if joined == ".." or joined.startswith("../") or joined.startswith("/"):
        return None
    path = (root / joined).resolve()
    return path if path.is_relative_to(root.resolve()) else None


def _service_build(name: str, conf: dict[str, Any], root: Path) -> BuildSpec | Problem:
    where = f"services.{name}.build"
    build = conf["build"]
    if isinstance(build, str):
        build = {"context": build}
    if not isinstance(build, dict):
        return Problem(where, "expected a path or a mapping")
    context_text = str(build.get("context") or ".")
    context = inside(root, ".", context_text)
    if context is None:
        return Problem(f"{where}.context", f"{context_text!r} must be a directory inside "
                                           "the project")
    if not context.is_dir():
        return Problem(f"{where}.context", f"{context_text!r} is not a directory of the "
                                           "project")
    dockerfile = str(build.get("dockerfile") or "")
    if not dockerfile:
        dockerfile = ("Dockerfile.template" if (context / "Dockerfile.template").is_file()
                      else "Dockerfile")
    rel_context = context.relative_to(root.resolve()).as_posix()
    found = inside(root, rel_context, dockerfile)
    if found is None or not found.is_relative_to(context):
        return Problem(f"{where}.dockerfile", f"{dockerfile!r} must be a file inside the "
                                              "project's build context")
    if not found.is_file():
        return Problem(where, f"no {dockerfile} in {context_text!r}")
    args = build.get("args") or {}
    if isinstance(args, list):
        args = dict(str(a).split("=", 1) for a in args if "=" in str(a))
    if not isinstance(args, dict):
        return Problem(f"{where}.args", "expected a mapping or a list of NAME=value")
    return BuildSpec(service=name, context=context,
                     dockerfile=found.relative_to(context).as_posix(),
                     args={str(k): str(v) for k, v in args.items()})


def _image(name: str, value: object) -> str | Problem:
    """An `image:` value: a reference without spaces or control characters."""
    if not isinstance(value, str):
        return Problem(f"services.{name}.image", "must be an image reference (a string)")
    if not value or len(value) > 512 or any(c.isspace() or ord(c) < 32 or ord(c) == 127
                                            for c in value):
        return Problem(f"services.{name}.image", f"{value[:80]!r} is not an image reference")
    return value


def load_project(*, root: Path) -> Project:
    """Find what to build: a compose file at the root, else a Dockerfile(.template)."""
    for name in COMPOSE_FILES:
        path = root / name
        if path.is_file():
            break
    else:
        for df in ("Dockerfile.template", "Dockerfile"):
            if (root / df).is_file():
                return Project(composition={}, images={}, scratch=root.parent,
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
        if not isinstance(conf, dict):
            problems.append(Problem(f"services.{svc}", "expected a mapping"))
        elif "build" in conf:
            spec = _service_build(str(svc), conf, root)
            if isinstance(spec, Problem):
                problems.append(spec)
            else:
                builds.append(spec)
        elif conf.get("image") is not None:
            image = _image(str(svc), conf["image"])
            if isinstance(image, Problem):
                problems.append(image)
            else:
                images[str(svc)] = image
        else:
            problems.append(Problem(f"services.{svc}", "needs build or image"))
    if problems:
        raise InvalidInput(name, problems)
    return Project(composition=doc, builds=builds, images=images, scratch=root.parent)


def context_tar(*, spec: BuildSpec, substitutions: dict[str, str]) -> tuple[bytes, str]:
    """`write_context_tar` into memory."""
    buf = io.BytesIO()
    dockerfile = write_context_tar(spec=spec, substitutions=substitutions, out=buf)
    return buf.getvalue(), dockerfile


def write_context_tar(*, spec: BuildSpec, substitutions: dict[str, str], out: IO[bytes]
                      ) -> str:
    """Write the build context of one service as a tar (honouring its .dockerignore) to
    `out`; returns the Dockerfile name to build with (a template becomes
    `Dockerfile.edgefleet`). Slow work for big contexts: run it in a thread."""
    rules = ignore_rules(spec.context)
    dockerfile = spec.dockerfile
    with tarfile.open(fileobj=out, mode="w") as tar:
        always = frozenset({spec.dockerfile, ".dockerignore"})
        for rel in context_files(spec.context, rules=rules, always=always):
            tar.add(spec.context / rel, arcname=rel, recursive=False)
        if dockerfile.endswith(".template"):
            text = (spec.context / dockerfile).read_text(errors="replace")
            for key, value in substitutions.items():
                text = text.replace(f"%%{key}%%", value)
            data = text.encode()
            info = tarfile.TarInfo("Dockerfile.edgefleet")
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
            dockerfile = "Dockerfile.edgefleet"
    return dockerfile


def template_values(*, device_type: str, arch: str) -> dict[str, str]:
    """`%%BALENA_MACHINE_NAME%%`, `%%BALENA_ARCH%%` and their `RESIN_` twins."""
    return {"BALENA_MACHINE_NAME": device_type, "BALENA_ARCH": arch,
            "RESIN_MACHINE_NAME": device_type, "RESIN_ARCH": arch}


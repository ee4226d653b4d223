"""Static checks of the Dockerfile, docker-compose.yml, .env.example and the installed apps."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
APP_SERVICES = ["web", "worker", "beat", "submission"]


def compose_services() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


def documented_names() -> set[str]:
    """Names given a value in .env.example, commented out or not: `# NAME=example`."""
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))


def names_in_compose() -> set[str]:
    """Keys of every `environment:` plus every `${NAME}` / `$NAME` substituted by compose."""
    names = set(re.findall(r"(?<!\$)\$\{?([A-Z_][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    for service in compose_services().values():
        environment = service.get("environment") or {}
        if isinstance(environment, list):  # the `- NAME=value` form
            environment = dict(item.partition("=")[::2] for item in environment)
        names.update(environment)
    return names


def names_read_by_settings() -> set[str]:
    source = (ROOT / "config" / "settings.py").read_text()
    return set(re.findall(r"\benv(?:\.\w+)?\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']", source))


def test_compose_defines_web_worker_beat_redis_and_postgres():
    assert {"web", "worker", "beat", "redis", "postgres"} <= compose_services().keys()


@pytest.mark.parametrize("name", ["postgres", "redis", "web", "submission"])
def test_service_reports_its_health(name):
    assert compose_services()[name]["healthcheck"]["test"]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_service_starts_only_once_postgres_and_redis_are_healthy(name):
    depends_on = compose_services()[name]["depends_on"]
    for dependency in ("postgres", "redis"):
        assert depends_on[dependency]["condition"] == "service_healthy"


def test_submission_listener_starts_by_default_on_port_587():
    submission = compose_services()["submission"]
    assert "profiles" not in submission
    assert submission["command"] == ["python", "manage.py", "submission"]
    assert "587:587" in submission["ports"]


def test_every_setting_read_from_the_environment_is_documented_in_env_example():
    read = names_read_by_settings()
    assert {"DJANGO_SECRET_KEY", "DATABASE_URL", "SENDGATE_SECRETS_KEYS"} <= read  # regex works
    assert read - documented_names() == set()  # the names left over are undocumented


def test_every_variable_docker_compose_uses_is_documented_in_env_example():
    used = names_in_compose()
    assert {"DATABASE_URL", "CELERY_BROKER_URL"} <= used  # the parsing works
    assert used - documented_names() == set()  # the names left over are undocumented


def test_the_image_copies_every_product_package_and_leaves_the_demo_out():
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\w+) \./\1$", dockerfile, re.MULTILINE))
    pyproject = (ROOT / "pyproject.toml").read_text()
    packages = set(
        re.findall(r'"(\w+)"', re.search(r"^packages = \[(.*?)\]$", pyproject, re.M | re.S)[1])
    )
    assert {"config", "mailkit", "outbound"} <= packages  # the parsing works
    assert packages <= copied
    assert "demo" not in copied


def test_without_debug_the_demo_app_is_not_installed(settings):
    assert not settings.DEBUG  # the suite runs with production settings
    assert "demo" not in settings.INSTALLED_APPS
    assert {"directory", "policy", "outbox", "gateways", "outbound"} <= set(settings.INSTALLED_APPS)


def _names(requirements: list[str]) -> set[str]:
    return {
        re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements
    }


def _locked(path: Path) -> set[str]:
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==", path.read_text(), re.MULTILINE)
    return {name.lower().replace("_", "-") for name in pins}


def test_every_dependency_is_pinned_in_the_lock_files_and_the_image_has_no_dev_tools():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = _names(project["dependencies"])
    tools = _names(
        project["optional-dependencies"]["dev"] + project["optional-dependencies"]["demo"]
    )
    assert {"django", "celery", "prometheus-client"} <= runtime  # the parsing works
    assert runtime - _locked(ROOT / "requirements.lock") == set(), "run `make lock`"
    assert (runtime | tools) - _locked(ROOT / "requirements-dev.lock") == set(), "run `make lock`"
    assert {"pytest", "trustme", "honcho", "playwright"} & _locked(
        ROOT / "requirements.lock"
    ) == set()


def test_compose_refuses_to_start_without_the_shared_keys():
    environment = yaml.safe_load(COMPOSE_FILE.read_text())["x-app"]["environment"]
    for name in ("DJANGO_SECRET_KEY", "SENDGATE_SECRETS_KEYS"):
        assert environment[name].startswith("${" + name + ":?")


@pytest.mark.parametrize("name", APP_SERVICES)
def test_every_app_service_shares_the_metrics_volume(name):
    assert "metrics:/app/var/metrics" in compose_services()[name]["volumes"]


@pytest.mark.parametrize("name", ["worker", "beat"])
def test_worker_and_beat_report_the_pipelines_health(name):
    test = compose_services()[name]["healthcheck"]["test"]
    assert test == ["CMD", "python", "manage.py", "health_check", "health", "--no-http"]


def test_the_image_ships_the_dutch_catalog_and_installs_from_the_lock():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^COPY locale \./locale$", dockerfile, re.MULTILINE)
    assert "-r requirements.lock" in dockerfile
    assert (ROOT / "locale" / "nl" / "LC_MESSAGES" / "django.mo").exists()

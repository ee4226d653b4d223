from django.apps import AppConfig


class OutboxConfig(AppConfig):
    name = "outbox"
    verbose_name = "Outbox"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the system checks (needs the app registry)

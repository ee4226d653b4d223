from django.apps import AppConfig


class OutboxConfig(AppConfig):
    name = "outbox"
    verbose_name = "Outbox"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from . import checks  # noqa: F401 - registers the system checks (needs the app registry)
        from .timestamps import use_c_loader

        connection_created.connect(use_c_loader, dispatch_uid="outbox.timestamps")

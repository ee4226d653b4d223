from django.apps import AppConfig


class GatewaysConfig(AppConfig):
    name = "gateways"
    verbose_name = "Send-as aliases and their gateways"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the system checks

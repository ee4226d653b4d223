from django.apps import AppConfig


class DomainkeysConfig(AppConfig):
    name = "domainkeys"
    verbose_name = "DKIM keys of the organisation's domains"

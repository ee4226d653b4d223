from django.apps import AppConfig


class SigninConfig(AppConfig):
    name = "signin"
    verbose_name = "Console sign-in: lockout, two-step verification, sessions"

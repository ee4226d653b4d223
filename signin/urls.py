from django.urls import include, path

from . import passkeys, views

urlpatterns = [
    path("login/", views.login, name="login"),
    path("login/code/", views.login_verify, name="login_verify"),
    path("logout/", views.logout, name="logout"),
    path("settings/security/", views.security, name="security"),
    path("settings/security/two-step/start/", views.two_step_start, name="two_step_start"),
    path("settings/security/two-step/", views.two_step_setup, name="two_step_setup"),
    path("settings/security/two-step/off/", views.two_step_off, name="two_step_off"),
    path("settings/security/recovery-codes/", views.recovery_codes, name="recovery_codes"),
    path("settings/security/password/", views.password_change, name="password_change"),
    path(
        "settings/security/passkeys/<int:pk>/remove/", views.passkey_remove, name="passkey_remove"
    ),
    path("passkeys/", include(passkeys)),
    path("settings/security/sessions/<int:pk>/end/", views.session_end, name="session_end"),
    path(
        "settings/security/sign-out-everywhere/",
        views.sign_out_everywhere,
        name="sign_out_everywhere",
    ),
    path("domains/<int:pk>/sign-in/", views.domain_sign_in, name="domain_sign_in"),
    path("domains/<int:pk>/sign-in/unlock/", views.domain_unlock, name="domain_unlock"),
]

from django.urls import path

from . import admin_views, app_password_views, views

urlpatterns = [
    path("compose/", views.compose, name="compose"),
    path("sent/", views.sent_list, name="sent_list"),
    path("sent/<int:pk>/", views.sent_detail, name="sent_detail"),
    path("sent/<int:pk>/retry/", views.sent_retry, name="sent_retry"),
    path("settings/app-passwords/", app_password_views.app_password_list, name="app_password_list"),
    path(
        "settings/app-passwords/<int:pk>/revoke/",
        app_password_views.app_password_revoke,
        name="app_password_revoke",
    ),
]

urlpatterns += [
    path("domains/<int:pk>/delivery/", admin_views.delivery_log, name="delivery_log"),
    path(
        "domains/<int:pk>/delivery/counters/",
        admin_views.delivery_counters,
        name="delivery_counters",
    ),
    path(
        "domains/<int:pk>/delivery/<int:message_pk>/",
        admin_views.delivery_detail,
        name="delivery_detail",
    ),
    path("domains/<int:pk>/delivery/retry/", admin_views.delivery_retry, name="delivery_retry"),
    path(
        "domains/<int:pk>/delivery/<int:message_pk>/retry/",
        admin_views.delivery_retry_message,
        name="delivery_retry_message",
    ),
]

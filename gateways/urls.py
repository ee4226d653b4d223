from django.urls import path

from . import domain_gateway_views, oauth_views, views

urlpatterns = [
    path("settings/send-as/", views.alias_list, name="alias_list"),
    path("settings/send-as/<int:pk>/confirm/", views.alias_confirm, name="alias_confirm"),
    path("settings/send-as/<int:pk>/resend/", views.alias_resend, name="alias_resend"),
    path("settings/send-as/<int:pk>/delete/", views.alias_delete, name="alias_delete"),
    path("settings/send-as/<int:pk>/edit/", views.alias_edit, name="alias_edit"),
    path("settings/send-as/<int:pk>/default/", views.alias_make_default, name="alias_make_default"),
    path("settings/send-as/reply-preference/", views.reply_preference, name="reply_preference"),
    path(
        "settings/send-as/<int:pk>/deliverability/",
        views.alias_deliverability,
        name="alias_deliverability",
    ),
    path("settings/send-as/srv/", views.srv_lookup, name="srv_lookup"),
    path("domains/<int:pk>/gateway/", domain_gateway_views.domain_gateway, name="domain_gateway"),
    path(
        "settings/send-as/tests/<int:pk>/",
        views.connection_test_status,
        name="connection_test_status",
    ),
    path(
        "settings/send-as/<int:pk>/sign-in/<slug:provider>/",
        oauth_views.alias_sign_in,
        name="alias_sign_in",
    ),
    path("settings/send-as/oauth/callback/", oauth_views.oauth_callback, name="oauth_callback"),
]

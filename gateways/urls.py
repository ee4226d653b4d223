from django.urls import path

from . import views

urlpatterns = [
    path("settings/send-as/", views.alias_list, name="alias_list"),
    path("settings/send-as/<int:pk>/confirm/", views.alias_confirm, name="alias_confirm"),
    path("settings/send-as/<int:pk>/resend/", views.alias_resend, name="alias_resend"),
    path("settings/send-as/<int:pk>/delete/", views.alias_delete, name="alias_delete"),
    path(
        "settings/send-as/<int:pk>/deliverability/",
        views.alias_deliverability,
        name="alias_deliverability",
    ),
    path("settings/send-as/srv/", views.srv_lookup, name="srv_lookup"),
]

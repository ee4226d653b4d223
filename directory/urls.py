from django.urls import path

from . import account_views, operator_views, password_views, preference_views, views

urlpatterns = [
    path("domains/<int:pk>/units/", views.unit_list, name="unit_list"),
    path("domains/<int:pk>/units/search/", views.unit_search, name="unit_search"),
    path("domains/<int:pk>/units/<int:unit_pk>/", views.unit_detail, name="unit_detail"),
    path("domains/<int:pk>/units/<int:unit_pk>/branch/", views.unit_branch, name="unit_branch"),
    path("domains/<int:pk>/units/<int:unit_pk>/delete/", views.unit_delete, name="unit_delete"),
    path("domains/<int:pk>/accounts/", account_views.account_list, name="account_list"),
    path("domains/<int:pk>/accounts/add/", account_views.account_add, name="account_add"),
    path("domains/<int:pk>/accounts/import/", account_views.account_import, name="account_import"),
    path(
        "domains/<int:pk>/accounts/import/progress/",
        account_views.account_import_progress,
        name="account_import_progress",
    ),
    path(
        "domains/<int:pk>/accounts/<int:account_pk>/",
        account_views.account_detail,
        name="account_detail",
    ),
    path("operator/domains/", operator_views.operator_domains, name="operator_domains"),
    path("operator/domains/add/", operator_views.operator_domain_add, name="operator_domain_add"),
    path("operator/domains/<int:pk>/", operator_views.operator_domain, name="operator_domain"),
    path(
        "operator/domains/<int:pk>/verify/",
        operator_views.operator_domain_verify,
        name="operator_domain_verify",
    ),
    path("settings/preferences/", preference_views.preferences, name="preferences"),
    path("password/forgot/", password_views.password_forgot, name="password_forgot"),
    path(
        "password/set/<uidb64>/<token>/",
        password_views.SetPasswordView.as_view(),
        name="set_password",
    ),
]

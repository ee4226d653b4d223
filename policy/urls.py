from django.urls import path

from . import views

urlpatterns = [
    path("domains/<int:pk>/direct-tls/", views.direct_delivery_tls, name="direct_delivery_tls"),
    path("domains/", views.domain_list, name="domain_list"),
    path("domains/<int:pk>/policy/", views.domain_policy, name="domain_policy"),
    path("domains/<int:pk>/policy/units/<int:unit_pk>/", views.unit_policy, name="unit_policy"),
    path(
        "domains/<int:pk>/policy/units/<int:unit_pk>/branch/",
        views.policy_branch,
        name="policy_branch",
    ),
    path(
        "domains/<int:pk>/policy/progress/", views.propagation_progress, name="propagation_progress"
    ),
    path("domains/<int:pk>/audit/", views.audit_log, name="audit_log"),
]

from django.urls import path

from . import views

urlpatterns = [
    path("metrics", views.metrics, name="metrics"),
    path("health/", views.HealthView.as_view(), name="health"),
]

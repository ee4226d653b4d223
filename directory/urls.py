from django.urls import path

from . import views

urlpatterns = [
    path("domains/<int:pk>/units/", views.unit_list, name="unit_list"),
    path("domains/<int:pk>/units/<int:unit_pk>/", views.unit_detail, name="unit_detail"),
    path("domains/<int:pk>/units/<int:unit_pk>/delete/", views.unit_delete, name="unit_delete"),
]

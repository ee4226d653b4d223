from django.urls import path

from . import views

urlpatterns = [
    path("domains/<int:pk>/units/", views.unit_list, name="unit_list"),
    path("domains/<int:pk>/units/search/", views.unit_search, name="unit_search"),
    path("domains/<int:pk>/units/<int:unit_pk>/", views.unit_detail, name="unit_detail"),
    path("domains/<int:pk>/units/<int:unit_pk>/branch/", views.unit_branch, name="unit_branch"),
    path("domains/<int:pk>/units/<int:unit_pk>/delete/", views.unit_delete, name="unit_delete"),
]

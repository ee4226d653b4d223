from django.urls import path

from . import views

urlpatterns = [
    path("domains/<int:pk>/dkim/", views.key_list, name="dkim_keys"),
    path("domains/<int:pk>/dkim/<int:key_pk>/check/", views.key_check, name="dkim_key_check"),
    path("domains/<int:pk>/dkim/<int:key_pk>/delete/", views.key_delete, name="dkim_key_delete"),
]

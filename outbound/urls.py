from django.urls import path

from . import views

urlpatterns = [
    path("compose/", views.compose, name="compose"),
    path("sent/", views.sent_list, name="sent_list"),
    path("sent/<int:pk>/", views.sent_detail, name="sent_detail"),
]

"""URLs of the forge app."""
from django.urls import path

from forge import views

urlpatterns = [
    path("", views.forge_home, name="forge"),
]

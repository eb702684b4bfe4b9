"""URLs of the memory app."""
from django.urls import path

from memory import views

urlpatterns = [
    path("", views.memory_home, name="memory"),
    path("datasets/", views.datasets, name="datasets"),
    path("image/", views.image, name="image"),
]

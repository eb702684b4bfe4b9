"""URLs of the memory app."""
from django.urls import path

from memory import learning_views, views

urlpatterns = [
    path("", views.memory_home, name="memory"),
    path("image/", views.image, name="image"),
    # The strategic loop (curated datasets, fine-tunes).
    path("datasets/", learning_views.datasets, name="datasets"),
    path("finetunes/", learning_views.finetunes, name="finetunes"),
]

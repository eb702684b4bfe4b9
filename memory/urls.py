"""URLs of the memory app."""
from django.urls import path

from memory import learning_views, views

urlpatterns = [
    path("", views.memory_home, name="memory"),
    path("m/<str:memory_id>/", views.memory_detail, name="memory_detail"),
    path("m/<str:memory_id>/delete/", views.memory_delete, name="memory_delete"),
    path("image/", views.image, name="image"),
    path("image/save/", views.image_save, name="image_save"),
    path("image/restore/", views.image_restore, name="image_restore"),
    path("image/personas/<str:name>/", views.persona_state_edit, name="persona_state_edit"),
    # The strategic loop (curated datasets, fine-tunes).
    path("datasets/", learning_views.datasets, name="datasets"),
    path("finetunes/", learning_views.finetunes, name="finetunes"),
]

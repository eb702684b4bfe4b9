"""URLs of the memory app."""
from django.urls import include, path

from memory import views
from memory.datasets import views as dataset_views
from memory.finetunes import views as finetune_views

urlpatterns = [
    path("", views.memory_home, name="memory"),
    path("m/<str:memory_id>/", views.memory_detail, name="memory_detail"),
    path("m/<str:memory_id>/delete/", views.memory_delete, name="memory_delete"),
    path("runs/<int:run_id>/forget/", views.run_forget, name="run_forget"),
    path("image/", views.image, name="image"),
    path("image/save/", views.image_save, name="image_save"),
    path("image/restore/", views.image_restore, name="image_restore"),
    path("image/personas/<str:name>/", views.persona_state_edit, name="persona_state_edit"),
    # The strategic loop: golden datasets, then fine-tune jobs.
    path("datasets/", dataset_views.datasets, name="datasets"),
    path("datasets/curate/", dataset_views.dataset_curate, name="dataset_curate"),
    path("datasets/review/", dataset_views.dataset_review, name="dataset_review"),
    path("datasets/new/", dataset_views.dataset_create, name="dataset_create"),
    path("datasets/examples/", dataset_views.dataset_examples, name="dataset_examples"),
    path("datasets/examples/<int:example_id>/", dataset_views.dataset_example, name="dataset_example"),
    path("datasets/examples/<int:example_id>/include/", dataset_views.dataset_example_toggle,
         name="dataset_example_toggle"),
    path("datasets/<int:dataset_id>/", dataset_views.dataset_detail, name="dataset_detail"),
    path("datasets/<int:dataset_id>/export.jsonl", dataset_views.dataset_export, name="dataset_export"),
    path("datasets/<int:dataset_id>/import/", dataset_views.dataset_import, name="dataset_import"),
    path("datasets/<int:dataset_id>/finetune/", finetune_views.finetune_new, name="finetune_new"),
    path("finetunes/", include("memory.finetunes.urls")),
    path("documents/", include("memory.documents.urls")),
]

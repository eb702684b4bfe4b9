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
    path("datasets/curate/", learning_views.dataset_curate, name="dataset_curate"),
    path("datasets/new/", learning_views.dataset_create, name="dataset_create"),
    path("datasets/examples/", learning_views.dataset_examples, name="dataset_examples"),
    path("datasets/examples/<int:example_id>/", learning_views.dataset_example, name="dataset_example"),
    path("datasets/examples/<int:example_id>/include/", learning_views.dataset_example_toggle,
         name="dataset_example_toggle"),
    path("datasets/<int:dataset_id>/", learning_views.dataset_detail, name="dataset_detail"),
    path("datasets/<int:dataset_id>/export.jsonl", learning_views.dataset_export, name="dataset_export"),
    path("datasets/<int:dataset_id>/import/", learning_views.dataset_import, name="dataset_import"),
    path("datasets/<int:dataset_id>/finetune/", learning_views.finetune_new, name="finetune_new"),
    path("finetunes/", learning_views.finetunes, name="finetunes"),
    path("finetunes/<int:job_id>/", learning_views.finetune_detail, name="finetune_detail"),
    path("finetunes/<int:job_id>/cancel/", learning_views.finetune_cancel, name="finetune_cancel"),
    path("finetunes/<int:job_id>/promote/", learning_views.finetune_promote, name="finetune_promote"),
    path("finetunes/<int:job_id>/rollback/", learning_views.finetune_rollback, name="finetune_rollback"),
]

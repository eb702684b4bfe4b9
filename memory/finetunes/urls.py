"""URLs of fine-tune jobs (under /memory/finetunes/); the Fine-tune form hangs off its dataset."""
from django.urls import path

from memory.finetunes import views

urlpatterns = [
    path("", views.finetunes, name="finetunes"),
    path("cache/clear/", views.finetune_cache_clear, name="finetune_cache_clear"),
    path("<int:job_id>/", views.finetune_detail, name="finetune_detail"),
    path("<int:job_id>/cancel/", views.finetune_cancel, name="finetune_cancel"),
    path("<int:job_id>/promote/", views.finetune_promote, name="finetune_promote"),
    path("<int:job_id>/rollback/", views.finetune_rollback, name="finetune_rollback"),
    path("<int:job_id>/compare/", views.finetune_compare, name="finetune_compare"),
    path("compare/<int:comparison_id>/vote/", views.comparison_vote, name="comparison_vote"),
]

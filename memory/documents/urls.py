"""URLs of the document library (under /memory/documents/)."""
from django.urls import path

from memory.documents import views

urlpatterns = [
    path("", views.documents, name="documents"),
    path("upload/", views.document_upload, name="document_upload"),
    path("rows/", views.document_rows, name="document_rows"),
    path("<int:document_id>/", views.document_detail, name="document_detail"),
    path("<int:document_id>/reindex/", views.document_reindex, name="document_reindex"),
    path("<int:document_id>/delete/", views.document_delete, name="document_delete"),
]

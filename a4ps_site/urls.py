"""Top-level URLs: auth, admin and each app's pages."""
from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

admin.site.site_header = "A4PS administration"
admin.site.site_title = "A4PS admin"

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/forge/", include("forge.api")),
    path("forge/", include("forge.urls")),
    path("memory/", include("memory.urls")),
    path("", include("personas.urls")),
]

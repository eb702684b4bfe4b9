"""Admin for personas and the event log."""
from django.contrib import admin

from personas.models import Event, Persona


@admin.register(Persona)
class PersonaAdmin(admin.ModelAdmin):
    list_display = ("name", "role", "title", "updated")
    readonly_fields = ("updated",)


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "source", "created")
    list_filter = ("kind", "source")
    search_fields = ("kind", "source")
    readonly_fields = ("kind", "source", "payload", "created")

"""Pages of the memory app: the memory browser and the living image."""
from personas.views import pending

memory_home = pending("Memory", "Search and browse the hierarchical memory; index statistics.")
image = pending("Image", "Living-image snapshots: save, restore and inspect the system's live state.")

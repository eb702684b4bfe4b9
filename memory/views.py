"""Pages of the memory app."""
from personas.views import pending

memory_home = pending("Memory", "Search and browse the hierarchical memory; index statistics.")
datasets = pending("Datasets", "Golden datasets curated from the best runs: browse, correct, export and import.")
image = pending("Image", "Living-image snapshots: save, restore and inspect the system's live state.")

"""Pages of the strategic loop: golden datasets and fine-tune jobs."""
from personas.views import pending

datasets = pending("Datasets", "Golden datasets curated from the best runs: browse, correct, export and import.")
finetunes = pending("Fine-tunes", "LoRA fine-tune jobs with progress, loss curves, evaluation, promote and rollback.")

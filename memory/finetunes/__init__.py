"""Fine-tune jobs, in one home: the job model, the training engine (PEFT LoRA on the CPU, Unsloth on a GPU),
services (freeze a dataset, train, evaluate, promote, roll back), selectors, form, views, the live
consumer, the Huey task and URLs; templates in templates/memory/finetunes/. The kernel answers a persona
with a promoted adapter through the `model_override` port that MemoryConfig.ready() fills in."""

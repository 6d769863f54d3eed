"""LoRA fine-tuning through PEFT: data validation, the training child process, checkpoints, results."""

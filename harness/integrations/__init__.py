"""Thin wrappers that meter other people's training loops with harness.api.Measurement:
PyTorch Lightning (lightning.py), Hugging Face Trainer (huggingface.py), and MLflow logging of
a finished run (mlflow.py). Each imports its library only when used."""

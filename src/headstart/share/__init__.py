"""Sharing a model with the ecosystem: timm's folder layout, the model card, the Hugging Face Hub.

headstart export RUN --format timm     -> RUN/export/timm (timm.create_model("local-dir:..."))
headstart push RUN USER/REPO           -> that folder on the Hub
headstart predict hf-hub:USER/REPO ... -> fetched back (safetensors only) and used
"""

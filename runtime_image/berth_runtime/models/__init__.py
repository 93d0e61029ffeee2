"""Model definitions and the loader for Hugging Face layout model directories."""

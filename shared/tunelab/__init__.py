"""tunelab: fine-tune LLMs and run the whole life of a fine-tuned model, on AWS or on one machine."""

__version__ = "0.1.0"

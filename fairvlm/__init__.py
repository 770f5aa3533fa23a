"""fairvlm: audit and repair the group fairness of CLIP-style medical vision-language models."""

__version__ = "0.1.0"

"""Complete models built from tinytorch.nn (GPT: chapter 07)."""

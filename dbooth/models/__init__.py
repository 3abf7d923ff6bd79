"""Model components: loading base models, building tiny ones, tokenizers."""

"""mmalign: preference alignment for multimodal and video LLMs."""

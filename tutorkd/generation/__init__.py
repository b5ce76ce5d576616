"""Tailored datasets without a teaching loop: ``tutorkd generate`` (``dataset``) and their cards."""

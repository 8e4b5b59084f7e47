"""Executors: how frames get from the reader through an Upscaler to the writer."""

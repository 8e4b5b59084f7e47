"""Frames in, frames out on one device: the engine (Upscaler), tiling, colour fix, conversions, CUDA
graphs and transfers, device and precision choice, and building an Upscaler from a run's options."""

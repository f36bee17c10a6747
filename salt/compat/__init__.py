"""Compatibility with salt-ml: its class names, config syntax and a migration tool."""

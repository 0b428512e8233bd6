"""Command modules: each is a small typer app that parses, calls and renders."""

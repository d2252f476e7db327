"""Plots and the self-contained HTML report."""
from .html import Page, fmt

__all__ = ["Page", "fmt"]

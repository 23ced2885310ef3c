"""Widgets of the main window. They only display state and emit user intent; no pipeline logic here."""

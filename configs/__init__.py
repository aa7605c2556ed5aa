"""Typed configuration: frozen dataclasses built from YAML mappings, checked in one place."""

"""Infirmary: a hospital management system built as a FHIR R4 (4.0.1) server."""

__version__ = "0.1.0"
